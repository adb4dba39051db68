"""`dlgen update` / `dlgen add`: re-render from .dlgen.toml and merge three ways, never
losing an edit."""

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_project_tests, tree
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.errors import WriteError
from scaffold.generate import generate, render, render_files
from scaffold.matrix import pairwise
from scaffold.merge import THEIRS, YOURS, merge3
from scaffold.spec import build_spec
from scaffold.update import apply_update, plan_update, update_diff

runner = CliRunner()


def dlgen(*args):
    return runner.invoke(app, [str(a) for a in args])


def new(tmp_path: Path, name: str, *flags: str) -> Path:
    assert dlgen("new", tmp_path / name, *flags).exit_code == 0
    return tmp_path / name


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# --- the merge itself --------------------------------------------------------------------

lines = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\n", "e\n"]), max_size=12)


@settings(deadline=None)  # timing is not the property; a loaded CI machine is slow
@given(lines, lines)
def test_merge_takes_the_only_changed_side(base, other):
    base, other = "".join(base), "".join(other)
    assert merge3(base, base, other) == (other, 0)  # you changed nothing: theirs
    assert merge3(base, other, base) == (other, 0)  # dlgen changed nothing: yours
    assert merge3(base, other, other) == (other, 0)  # both made the same change


@settings(deadline=None)
@given(lines, st.data())
def test_merge_never_drops_a_line_you_added(base, data):
    """Whatever dlgen changed, a line you inserted survives: merged, or inside a conflict."""
    yours, theirs = list(base), list(base)
    yours.insert(data.draw(st.integers(0, len(base))), "mine\n")
    for _ in range(data.draw(st.integers(0, 3))):  # dlgen inserts and deletes lines
        if theirs and data.draw(st.booleans()):
            del theirs[data.draw(st.integers(0, len(theirs) - 1))]
        else:
            theirs.insert(data.draw(st.integers(0, len(theirs))), "new\n")
    merged, conflicts = merge3("".join(base), "".join(yours), "".join(theirs))
    assert "mine\n" in merged.splitlines(keepends=True)
    if not conflicts:
        assert merged.count("new\n") == theirs.count("new\n")


def test_merge_applies_both_sides_and_marks_real_conflicts():
    base = "".join(f"line {i}\n" for i in range(10))
    yours = base.replace("line 1\n", "line 1 (yours)\n")
    theirs = base.replace("line 8\n", "line 8 (dlgen)\n")
    merged, conflicts = merge3(base, yours, theirs)
    assert conflicts == 0
    assert merged == base.replace("line 1\n", "line 1 (yours)\n").replace(
        "line 8\n", "line 8 (dlgen)\n"
    )
    merged, conflicts = merge3(base, yours, base.replace("line 1\n", "line 1 (dlgen)\n"))
    assert conflicts == 1
    assert f"{YOURS}line 1 (yours)\n=======\nline 1 (dlgen)\n{THEIRS}" in merged


# --- whole projects ----------------------------------------------------------------------


def test_update_of_an_untouched_project_equals_a_fresh_generation(tmp_path):
    root = new(tmp_path, "demo")
    result = dlgen("update", root, "--model", "transformer", "--amp", "--ema")
    assert result.exit_code == 0, result.output
    expected = render(build_spec("demo", model="transformer", amp=True, ema=True))
    assert tree(root) == expected  # every file, .dlgen.toml and the merge base included
    again = dlgen("update", root)
    assert again.exit_code == 0 and again.stdout.strip() == "already up to date"


def test_add_keeps_your_edits_and_the_project_still_trains(tmp_path):
    root = new(tmp_path, "demo")
    train, config = root / "demo/train.py", root / "demo/config.py"
    edit(train, "    cfg = load_config(argv)\n", "    cfg = load_config(argv)\n    print('mine')\n")
    edit(config, "    seed: int = 0\n", "    seed: int = 1234\n")
    (root / "notes.md").write_text("my notes\n")
    (root / "scripts").mkdir(exist_ok=True)

    result = dlgen("add", "ema", "--path", root)
    assert result.exit_code == 0, result.output
    assert "merge your edits into demo/train.py" in result.stdout
    assert "print('mine')" in train.read_text() and "EMA(" in train.read_text()
    assert "seed: int = 1234" in config.read_text() and "ema_decay" in config.read_text()
    assert (root / "notes.md").read_text() == "my notes\n"
    assert "ema = true" in (root / ".dlgen.toml").read_text()
    code, report = run_project_tests(root, "demo")  # loss falls, exact resume with the EMA, ...
    assert code == 0, report[-3000:]

    # Taking the feature out again removes its code and still keeps the edits.
    result = dlgen("update", root, "--no-ema")
    assert result.exit_code == 0, result.output
    assert "EMA(" not in train.read_text() and "print('mine')" in train.read_text()


def test_a_conflict_keeps_both_versions_and_exits_1(tmp_path):
    root = new(tmp_path, "demo")
    data, model = root / "demo/data.py", root / "demo/model.py"
    generated = data.read_text()
    # A model switch rewrites the class line that this edit touches as well.
    edit(model, "class MLP(nn.Module):", "class MLP(nn.Module):  # my note")
    result = dlgen("update", root, "--model", "cnn")
    assert result.exit_code == 1
    assert "CONFLICT demo/model.py" in result.stdout
    text = model.read_text()
    assert YOURS in text and THEIRS in text and "# my note" in text and "Conv2d" in text
    assert data.read_text() != generated  # the clean files were updated all the same
    assert "<<<<<<<" not in data.read_text()


def test_deleted_files_stay_deleted_and_dropped_edited_files_stay(tmp_path):
    root = new(tmp_path, "demo", "--ddp")
    (root / "scripts/slurm.sbatch").unlink()
    edit(root / "scripts/train_ddp.sh", "set -euo pipefail\n", "set -euo pipefail\n# mine\n")
    result = dlgen("update", root, "--no-ddp")
    assert result.exit_code == 0, result.output
    assert "kept yours: scripts/train_ddp.sh" in result.stdout
    assert "# mine" in (root / "scripts/train_ddp.sh").read_text()
    assert not (root / "scripts/slurm.sbatch").exists()
    assert not (root / "scripts/train_multinode.sh").exists()  # untouched: removed


def test_dry_run_writes_nothing(tmp_path):
    root = new(tmp_path, "demo")
    before = tree(root)
    result = dlgen("update", root, "--ema", "--dry-run")
    assert result.exit_code == 0 and "would update demo/train.py" in result.stdout
    assert tree(root) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["update", "{tmp}"], "is not a dlgen project"),
        (["add", "emaa", "--path", "{root}"], "unknown feature 'emaa'"),
        (["update", "{root}", "--attention", "manual"], "--attention applies only to"),
        (["update", "{root}", "--ddp", "--fsdp"], "fsdp"),
    ],
)
def test_bad_update_exits_2_with_one_line(tmp_path, args, message):
    root = new(tmp_path, "demo")
    result = dlgen(*(a.format(tmp=tmp_path, root=root) for a in args))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_damaged_state_is_a_clear_error(tmp_path):
    root = new(tmp_path, "demo")
    (root / ".dlgen/base.json").write_text("{not json")
    result = dlgen("update", root)
    assert result.exit_code == 2 and "damaged" in result.stderr
    assert re.search(r"restore it from version control", result.stderr)


def test_a_base_path_out_of_the_project_is_refused(tmp_path):
    root = new(tmp_path, "demo")
    outside = tmp_path / "precious.txt"
    outside.write_text("x\n")
    base = json.loads((root / ".dlgen/base.json").read_text())
    base["../precious.txt"] = "x\n"  # as generated, unchanged: would be "removed"
    (root / ".dlgen/base.json").write_text(json.dumps(base))
    result = dlgen("update", root)
    assert result.exit_code == 2 and "damaged" in result.stderr
    assert outside.read_text() == "x\n"


def test_a_newer_template_reaches_an_edited_project(tmp_path):
    """As after upgrading dlgen: the base (old template) lacks a line the new one has."""
    root = new(tmp_path, "demo")
    train = root / "demo/train.py"
    fix = "    optimizer.zero_grad(set_to_none=True)\n"
    assert train.read_text().count(fix) == 1
    base = json.loads((root / ".dlgen/base.json").read_text())
    base["demo/train.py"] = base["demo/train.py"].replace(fix, "")
    (root / ".dlgen/base.json").write_text(json.dumps(base))
    edit(train, fix, "")  # the project as the old dlgen wrote it...
    edit(train, "    cfg = load_config(argv)\n", "    cfg = load_config(argv)\n    print('mine')\n")
    result = dlgen("update", root)  # ...and as you edited it since
    assert result.exit_code == 0, result.output
    assert "merge your edits into demo/train.py" in result.stdout
    text = train.read_text()
    assert text.count(fix) == 1 and "print('mine')" in text
    assert json.loads((root / ".dlgen/base.json").read_text()) == render_files(build_spec("demo"))


def test_update_walks_the_pairwise_matrix(tmp_path):
    """From each pairwise row to the next, an untouched project updates to exactly what
    `dlgen new` would write: every option, every model switch, files added and removed."""
    rows = pairwise()
    root = tmp_path / rows[0].name
    generate(rows[0], root)
    for row in rows[1:]:
        apply_update(root, plan_update(root, **row.answers()))
        assert tree(root) == render(row), row
        assert all(any(d.iterdir()) for d in root.rglob("*") if d.is_dir())  # no empty folders


# --- hostile projects: nothing outside is touched, nothing inside half-written -------------


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlgen: error: "), result.stderr
    return lines[0]


def test_update_never_deletes_a_file_through_a_symlinked_folder(tmp_path):
    root = new(tmp_path, "demo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("x\n")
    (root / "shared").symlink_to(elsewhere)
    base = json.loads((root / ".dlgen/base.json").read_text())
    base["shared/precious.txt"] = "x\n"  # as generated, unchanged: would be "removed"
    (root / ".dlgen/base.json").write_text(json.dumps(base))
    before = snapshot(root)
    assert "leads out of" in one_error_line(dlgen("update", root))
    assert (elsewhere / "precious.txt").read_text() == "x\n"
    assert snapshot(root) == before


def test_update_never_writes_through_a_symlinked_folder(tmp_path):
    root = new(tmp_path, "demo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "scripts").symlink_to(elsewhere)  # --ddp would write its launchers there
    assert "leads out of" in one_error_line(dlgen("update", root, "--ddp"))
    assert not any(elsewhere.iterdir())
    assert "ddp = false" in (root / ".dlgen.toml").read_text()


def test_a_symlinked_project_folder_is_still_the_project(tmp_path):
    real = new(tmp_path, "demo")
    link = tmp_path / "link"
    link.symlink_to(real)
    result = dlgen("update", link, "--ema")
    assert result.exit_code == 0, result.output
    assert "ema = true" in (real / ".dlgen.toml").read_text()


def test_an_update_that_cannot_write_one_file_writes_none(tmp_path):
    root = new(tmp_path, "demo")
    (root / "scripts").mkdir()
    (root / "scripts/slurm.sbatch").mkdir()  # in the way of a file --ddp adds
    before = snapshot(root)
    assert "in the way" in one_error_line(dlgen("update", root, "--ddp"))
    assert snapshot(root) == before


def test_a_fault_during_an_update_changes_nothing(tmp_path, monkeypatch):
    root = new(tmp_path, "demo", "--ddp")
    edit(
        root / "demo/train.py",
        "    cfg = load_config(argv)\n",
        "    cfg = load_config(argv)\n    1\n",
    )
    before = snapshot(root)
    report = plan_update(root, ema=True, ddp=False)
    calls, real = [], os.replace

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(WriteError, match="nothing was changed"):
        apply_update(root, report)
    monkeypatch.setattr(os, "replace", real)
    assert snapshot(root) == before  # the deleted launchers are back, no temp file is left


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: edit(r / ".dlgen.toml", "ema = false", 'ema = "false"'), "ema must be true"),
        (lambda r: edit(r / ".dlgen.toml", 'model = "mlp"', "model = 3"), "model must be"),
        (lambda r: edit(r / ".dlgen.toml", 'name = "demo"', "name = 1"), "name is not"),
        (lambda r: edit(r / ".dlgen.toml", "[options]", "options = 1\n[x]"), "not a table"),
        (lambda r: (r / ".dlgen.toml").write_bytes(b'name = "d\xe9mo"\n'), "not UTF-8"),
        (lambda r: (r / ".dlgen/base.json").write_bytes(b"\xff\xfe{}"), "not UTF-8"),
        (lambda r: (r / ".dlgen/base.json").write_text('{"a.py": 3}'), "damaged"),
        (lambda r: (r / ".dlgen/base.json").write_text('["a.py"]'), "damaged"),
        (lambda r: (r / ".dlgen/base.json").write_text('{"": "x"}'), "damaged"),
        (lambda r: (r / ".dlgen/base.json").write_text('{"/etc/x": "x"}'), "damaged"),
        (lambda r: (r / ".dlgen/base.json").unlink() or (r / ".dlgen/base.json").mkdir(), "folder"),
        (lambda r: (r / ".dlgen/base.json").unlink(), "missing"),
    ],
)
def test_damaged_state_files_exit_2_and_write_nothing(tmp_path, damage, message):
    root = new(tmp_path, "demo")
    damage(root)
    before = snapshot(root)
    assert message in one_error_line(dlgen("update", root, "--amp"))
    assert snapshot(root) == before


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to apply the diff")
@pytest.mark.parametrize(
    "args, changes",
    [
        (["--ema"], {"ema": True}),
        (["--model", "cnn", "--no-ddp"], {"model": "cnn", "ddp": False}),  # a conflict
    ],
)
def test_dry_run_shows_the_diff_that_the_update_applies(tmp_path, args, changes):
    """`git apply` of the diff --dry-run prints gives exactly the files the update writes,
    conflict markers included; only the merge base, .dlgen/base.json, is left out."""
    root = new(tmp_path, "demo", "--ddp")
    edit(root / "demo/model.py", "class MLP(nn.Module):", "class MLP(nn.Module):  # my note")
    edit(
        root / "demo/train.py",
        "    cfg = load_config(argv)\n",
        "    cfg = load_config(argv)\n    1\n",
    )
    (root / "scripts/slurm.sbatch").unlink()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    dry = dlgen("update", root, *args, "--dry-run")
    diff = update_diff(root, plan_update(root, **changes))
    assert diff.startswith("diff --git a/") and diff in dry.stdout
    assert "would update demo/train.py" in dry.stdout or "would merge" in dry.stdout
    assert (dry.exit_code == 1) == ("+<<<<<<< yours" in diff), dry.output
    applied = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", "-"],
        input=diff,
        cwd=copy,
        text=True,
        capture_output=True,
    )
    assert applied.returncode == 0, applied.stderr
    assert dlgen("update", root, *args).exit_code == dry.exit_code
    assert tree(copy) == {**tree(root), ".dlgen/base.json": tree(copy)[".dlgen/base.json"]}


def test_a_symlink_loop_or_a_name_too_long_is_one_line(tmp_path):
    root = new(tmp_path, "demo")
    (root / "loop").symlink_to(root / "loop")
    base = json.loads((root / ".dlgen/base.json").read_text())
    base["loop/x.py"] = "x\n"
    (root / ".dlgen/base.json").write_text(json.dumps(base))
    assert "Symlink loop" in one_error_line(dlgen("update", root))
    assert "too long" in one_error_line(dlgen("update", tmp_path / ("a" * 300)))
    assert "too long" in one_error_line(dlgen("new", tmp_path / ("a" * 300) / "demo"))
