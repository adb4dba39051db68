"""Property-based: any name and any option values give a clean exit-2 error, or a project
whose code is black-clean and compiles; any argument list and any state files give exit 0,
or exit 1 (a merge conflict) or 2 with exactly one line on stderr: never a traceback."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import black
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.errors import SpecError
from scaffold.formatting import needs_black
from scaffold.generate import render
from scaffold.spec import OPTIONS, build_spec

NAMES = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"[A-Za-z_0-9][A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.sampled_from(["torch", "json", "class", "__init__", "My-Proj", "x" * 64, "a" * 65]),
)
OPTION_VALUES = st.fixed_dictionaries(
    {},
    optional={
        o.name: st.booleans() if o.is_flag else st.sampled_from([*o.values, "bogus", ""])
        for o in OPTIONS
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, OPTION_VALUES)
def test_spec_either_refuses_cleanly_or_renders_clean_code(name, options):
    try:
        spec = build_spec(name, **options)
    except SpecError as e:
        assert str(e) and "\n" not in str(e)
        return
    files = render(spec)
    for rel, text in files.items():
        if rel.endswith(".py"):
            compile(text, rel, "exec")
            if needs_black(text):  # a long name: black ran, and what it wrote is stable
                assert black.format_str(text, mode=black.Mode(line_length=88)) == text, rel
    train = files[f"{spec.package}/train.py"]
    assert black.format_str(train, mode=black.Mode(line_length=88)) == train


@settings(max_examples=60, deadline=None)
@given(NAMES.filter(lambda n: n and not n.startswith("-") and "\x00" not in n), OPTION_VALUES)
def test_cli_exits_0_or_2_never_a_traceback(name, options):
    args = ["new", name, "--dry-run"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, value]
    assert_clean_outcome(args, CliRunner().invoke(app, args))


def assert_clean_outcome(args, result) -> None:
    """Exit 0; 1 from update with conflicts; or 2 with one `dlgen: error:` line on stderr."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert "Traceback" not in result.output, args
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dlgen: error: "), (args, result.stderr)
    if result.exit_code == 1:
        assert "CONFLICT" in result.stdout, (args, result.output)


# --- any argument list ---------------------------------------------------------------------

COMMANDS = ["new", "update", "add", "snippet", "list", "frob", "--help", "--version", ""]
TOKENS = st.one_of(
    st.sampled_from(
        [
            *(o.flag for o in OPTIONS),
            *("--no-" + o.flag[2:] for o in OPTIONS if o.is_flag),
            *(v for o in OPTIONS for v in o.values),
            *("--force", "--dry-run", "-i", "--json", "--path", "-o", "--teach", "--lang"),
            *("ema", "amp", "tensors", "mlp", "proj", "demo", "runs", "torch", "x.py"),
            *("-", "--", "", "=", "--model=cnn", "--amp=1", "-x", "bogus", "é", "a b"),
            *("a" * 300, "a" * 300 + "/demo", "sub/demo", "demo\x00", ".", "x.py/demo"),
        ]
    ),
    st.text(alphabet=st.characters(blacklist_characters="/."), max_size=8),  # no ../ nor /
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(COMMANDS), st.lists(TOKENS, max_size=6))
def test_any_argument_list_exits_cleanly(command, tokens):
    args = [a for a in [command, *tokens] if a != ""] if command else tokens
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:  # whatever gets written, it lands here
        os.chdir(tmp)
        try:
            result = CliRunner().invoke(app, args, input="", env={"HOME": tmp})
        finally:
            os.chdir(here)
    assert_clean_outcome(args, result)


# --- any state files -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One generated project, copied for each example."""
    root = tmp_path_factory.mktemp("fuzz") / "demo"
    assert CliRunner().invoke(app, ["new", str(root), "--ddp"]).exit_code == 0
    return root


VALUES = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["true", "false", "mlp", "gpt", "cnn", "sdpa", "zh", "", "demo", "../x"]),
    st.text(max_size=10),
    st.lists(st.booleans(), max_size=2),
)
TOML_KEYS = st.sampled_from(
    [o.flag[2:] for o in OPTIONS] + ["nonsense", "grad_checkpointing", "Model"]
)
STATE = st.fixed_dictionaries(
    {"options": st.dictionaries(TOML_KEYS, VALUES, max_size=6)},
    optional={"name": st.one_of(VALUES, st.sampled_from(["demo", "runs", "1x"]))},
)
REL_PATHS = st.sampled_from(
    [
        "demo/train.py",
        "README.md",
        "x.py",
        "../escape.txt",
        "/etc/passwd",
        "",
        "a/../../b",
        ".dlgen.toml",
        ".dlgen/base.json",
        "scripts/train_ddp.sh",
        "link/file.txt",
        "a\x00b",
    ]
)
BASE = st.one_of(
    st.dictionaries(REL_PATHS, st.one_of(st.text(max_size=20), VALUES, st.none()), max_size=4),
    VALUES,
    st.none(),
)


def toml_text(data: dict) -> str:
    def literal(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"name = {literal(data['name'])}"] if "name" in data else []
    lines.append("[options]")
    lines += [f"{json.dumps(k)} = {literal(v)}" for k, v in data["options"].items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.one_of(STATE.map(toml_text), st.binary(max_size=30).map(bytes.hex), st.none()),
    state_bytes=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
    base=st.one_of(BASE.map(json.dumps), st.none()),
    base_bytes=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
    args=st.lists(
        st.sampled_from(["--ema", "--no-ddp", "--model", "cnn", "--dry-run"]), max_size=3
    ),
)
def test_any_state_files_exit_cleanly_and_touch_nothing_outside(
    pristine, state, state_bytes, base, base_bytes, args
):
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp) / "outside"
        outside.mkdir()
        (outside / "file.txt").write_text("x\n")
        (outside / "escape.txt").write_text("x\n")
        root = Path(tmp) / "box" / "demo"
        shutil.copytree(pristine, root)
        (root / "link").symlink_to(outside)
        if state is not None:
            (root / ".dlgen.toml").write_text(state)
        if state_bytes is not None:
            (root / ".dlgen.toml").write_bytes(state_bytes)
        if base is not None:
            (root / ".dlgen/base.json").write_text(base)
        if base_bytes is not None:
            (root / ".dlgen/base.json").write_bytes(base_bytes)
        before = {p.name: p.read_bytes() for p in outside.iterdir()}
        result = CliRunner().invoke(app, ["update", str(root), *args])
        assert_clean_outcome(args, result)
        assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
