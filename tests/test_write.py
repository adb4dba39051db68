"""Generation is atomic: a failure or Ctrl-C leaves nothing behind."""

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.errors import WriteError
from scaffold.generate import generate
from scaffold.spec import build_spec


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = Path.write_text

    def interrupt(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", interrupt)
    result = CliRunner().invoke(app, ["new", str(tmp_path / "demo")])
    assert result.exit_code == 2 and "nothing was written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(WriteError, match="No space left on device"):
        generate(build_spec("demo"), tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["new", str(blocker / "demo")])
    assert result.exit_code == 2
    assert result.stderr.startswith("dlgen: error: cannot write the project")
    assert blocker.read_text() == "not a folder"


# --- nothing of the user's is lost: all or nothing, never over a backup ---------------------


def dlgen(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_snippet_output_never_replaces_a_file_without_a_backup(tmp_path):
    out = tmp_path / "mine.py"
    out.write_text("my work\n")
    result = dlgen("snippet", "tensors", "-o", out)
    assert result.exit_code == 0, result.output
    assert "old content saved as" in result.stdout
    assert (tmp_path / "mine.py.orig").read_text() == "my work\n"
    assert "torch" in out.read_text()
    (tmp_path / "mine.py").write_text("my second version\n")
    assert dlgen("snippet", "tensors", "-o", out).exit_code == 0
    assert (tmp_path / "mine.py.orig").read_text() == "my work\n"  # the first backup stays
    assert (tmp_path / "mine.py.orig.1").read_text() == "my second version\n"


def test_force_never_overwrites_a_backup_the_user_made(tmp_path):
    target = tmp_path / "demo"
    assert dlgen("new", target).exit_code == 0
    train = target / "demo" / "train.py"
    generated = train.read_text()
    train.write_text("my train\n")
    (target / "demo" / "train.py.orig").write_text("my own backup\n")
    result = dlgen("new", target, "--force")
    assert result.exit_code == 0, result.output
    assert "old content saved as demo/train.py.orig.1" in result.stdout
    assert (target / "demo" / "train.py.orig").read_text() == "my own backup\n"
    assert (target / "demo" / "train.py.orig.1").read_text() == "my train\n"
    assert train.read_text() == generated


def test_force_writes_all_files_or_none(tmp_path):
    target = tmp_path / "demo"
    assert dlgen("new", target).exit_code == 0
    (target / "demo" / "train.py").write_text("my train\n")
    (target / "demo" / "model.py").unlink()
    (target / ".dlgen" / "base.json").unlink()
    (target / ".dlgen" / "base.json").mkdir()  # in the way of the last file written
    before = snapshot(target)
    result = dlgen("new", target, "--force")
    assert "a folder of that name is in the way" in result.stderr and result.exit_code == 2
    assert snapshot(target) == before  # not one file written, no backup, no temp file
    assert not (target / "demo" / "model.py").exists()


@pytest.mark.parametrize("fail_at", [1, 5, 12])
def test_a_fault_while_committing_puts_every_file_back(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "demo"
    assert dlgen("new", target).exit_code == 0
    for name in ("train.py", "model.py", "config.py"):
        (target / "demo" / name).write_text(f"my {name}\n")
    (target / "demo" / "data.py").unlink()
    before = snapshot(target)
    calls, real = [], os.replace

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(WriteError, match="Input/output error"):
        generate(build_spec("demo", ema=True), target, force=True)
    monkeypatch.setattr(os, "replace", real)
    assert snapshot(target) == before  # hidden temporary files included


def test_new_in_the_empty_folder_you_stand_in_keeps_that_folder(tmp_path, monkeypatch):
    here = tmp_path / "demo"
    here.mkdir(mode=0o750)
    here.chmod(0o750)
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    result = dlgen("new", ".")
    assert result.exit_code == 0, result.output
    assert here.stat().st_ino == inode and here.stat().st_mode & 0o777 == 0o750
    assert Path.cwd() == here and Path("demo/train.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_force_with_one_read_only_file_writes_none(tmp_path, monkeypatch):
    target = tmp_path / "demo"
    assert dlgen("new", target).exit_code == 0
    for name in ("train.py", "model.py"):
        (target / "demo" / name).write_text(f"my {name}\n")
    read_only = target / "tests"
    real = os.access
    # As for a user who is not root: this file may not be written (chmod does not stop root).
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: False if Path(p).parent == read_only else real(p, mode, **kw),
    )
    before = snapshot(target)
    result = dlgen("new", target, "--force", "--ema")
    assert result.exit_code == 2 and "read-only" in result.stderr, result.output
    assert snapshot(target) == before
