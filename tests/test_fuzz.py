"""Property-based: any name and any option values give a clean exit-2 error, or a project
whose code is black-clean and compiles; any argument list and any state files give exit 0,
or exit 1 (a merge conflict) or 2 with exactly one line on stderr: never a traceback."""

import contextlib
import io
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


# --- a generated project's command lines and config files ----------------------------------

FLAG_VALUES = [
    *("abc", "1.5", "-1", "0", "1", "3", "nan", "-inf", "1e999", "", "=", "--", "é"),
    *("9" * 5000, "0x10", "1_0", " 3", "true", "cuda:x", "cuda:99", "auto", "a b", "-"),
]
FLAG_TOKENS = st.one_of(
    st.sampled_from(
        [
            *("--lr", "--batch-size", "--seed", "--betas", "--dropout", "--device"),
            *("--channels", "--hidden-dims", "--d-model", "--n-heads", "--ema-decay"),
            *("--no-compile", "--compile", "--resume", "--config", "--lrr", "-x", "--lr="),
            *("--epochs", "--max-steps", "--val-fraction", "--out-dir", "--precision"),
            *FLAG_VALUES,
        ]
    ),
    st.text(max_size=6),
)
TOML_VALUES = [
    *('"x"', "1", "-1", "0", "2.5", "nan", "inf", "true", "[]", "[1, 2.5]", '["a"]'),
    *("[1, [2]]", "{a = 1}", "1979-05-27", "07:32:00", "9" * 400, "[1, 2]", "0.9"),
]
TOML_KEYS_OF_A_PROJECT = [
    *("lr", "batch_size", "betas", "channels", "hidden_dims", "seed", "device"),
    *("dropout", "image_size", "precision", "ema_decay", "bogus", "x.y", '"a b"'),
]
TOML_FILES = st.one_of(
    st.lists(
        st.tuples(st.sampled_from(TOML_KEYS_OF_A_PROJECT), st.sampled_from(TOML_VALUES)),
        max_size=4,
    ).map(lambda pairs: "".join(f"{k} = {v}\n" for k, v in pairs).encode()),
    st.binary(max_size=30),
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A CNN and a GPT project with most options on, imported for the whole module."""
    pytest.importorskip("torch")
    from conftest import ProjectImport, make_project

    root = tmp_path_factory.mktemp("cli")
    cnn = make_project(root, "fzcnn", model="cnn", ema=True, amp=True)
    gpt = make_project(root, "fzgpt", model="gpt", amp=True, compile=True)
    with ProjectImport(cnn, "fzcnn") as c, ProjectImport(gpt, "fzgpt") as g:
        yield {"cnn": c, "gpt": g}


def project_outcome(call) -> tuple[int, str]:
    """Run call(); return (exit code, stderr): 0 when it returns."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            call()
            return 0, err.getvalue()
        except SystemExit as e:
            return e.code, err.getvalue()


@pytest.mark.slow
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(["cnn", "gpt"]),
    module=st.sampled_from(["config", "export", "predict"]),
    tokens=st.lists(FLAG_TOKENS, max_size=6),
    toml=st.one_of(st.none(), TOML_FILES),
)
def test_any_flags_and_config_file_of_a_project_exit_cleanly(generated, key, module, tokens, toml):
    """A generated CLI given any arguments (and any --config file) parses them, or stops
    with exit 1 or 2 and one line on stderr: never a traceback nor a usage block."""
    if key == "gpt" and module == "predict":
        module = "config"  # sample.py's flags: not yet (#13 leftovers of the text data work)
    p = generated[key]
    with tempfile.TemporaryDirectory() as tmp:
        argv = list(tokens)
        if toml is not None:
            (Path(tmp) / "c.toml").write_bytes(toml)
            argv = ["--config", str(Path(tmp) / "c.toml"), *argv]
        here = os.getcwd()
        os.chdir(tmp)  # a checkpoint path in the arguments is looked for here
        try:
            target = p.module(module)
            call = target.load_config if module == "config" else target.main
            code, err = project_outcome(lambda: call(argv))
        finally:
            os.chdir(here)
    assert "Traceback" not in err, (argv, err)
    if code == 0 and "-h" not in argv and "--help" not in argv:
        return
    if code == 0:  # --help: the usage goes to stdout
        assert not err, (argv, err)
        return
    assert code in (1, 2), (argv, code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, module, err)


JSON_VALUES = st.one_of(
    st.integers(-3, 10), st.floats(), st.booleans(), st.none(), st.text(max_size=4)
)
EVENT = st.dictionaries(
    st.sampled_from(["step", "split", "loss", "epoch", "lr", "accuracy"]),
    st.one_of(JSON_VALUES, st.sampled_from(["train", "val"])),
)
METRICS_LINES = st.lists(
    st.one_of(
        EVENT.map(json.dumps).map(str.encode),
        st.sampled_from([b"5", b"[1]", b'{"step": 1', b"null", b'"x"', b"", b"\xff\xfe"]),
        st.binary(max_size=12),
    ),
    max_size=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=METRICS_LINES, resume_step=st.integers(0, 5))
def test_any_metrics_jsonl_resumes_with_notes(generated, lines, resume_step):
    """--resume auto over a metrics.jsonl with torn, damaged or foreign lines keeps the
    whole events up to the checkpoint's step and drops the others with a one-line note."""
    p = generated["cnn"]
    metrics, run_folder = p.module("metrics"), p.module("run").RunFolder

    class Run:  # the run folder's own event() over whatever the file held
        best = last = None
        rates: dict = {}

        def event(self, event):
            run_folder.event(self, event)

        def write(self, step, status="running"):
            pass

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_bytes(b"\n".join(lines))
        code, err = project_outcome(
            lambda: metrics.MetricsLog(path, resume_step, 10, Run()).close(resume_step)
        )
        kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert code == 0 and "Traceback" not in err, err
    assert all(e["step"] <= resume_step for e in kept)
    assert all(line.startswith("note: ") for line in err.splitlines()), err
