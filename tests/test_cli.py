import json
import subprocess
import sys

from typer.testing import CliRunner

from scaffold import __version__
from scaffold.cli import app
from scaffold.spec import OPTIONS, SNIPPETS

runner = CliRunner()


def dlgen(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    assert dlgen("--version").stdout.strip() == f"dlgen {__version__}"
    result = dlgen("new", "--help")
    assert result.exit_code == 0
    for option in OPTIONS:  # every option of the spec is a flag, with its help
        assert option.flag in result.stdout


def test_new_writes_a_project(tmp_path):
    result = dlgen("new", tmp_path / "sub" / "My-Proj")
    assert result.exit_code == 0, result.output
    root = tmp_path / "sub" / "My-Proj"
    assert (root / "my_proj" / "train.py").is_file()
    assert 'model = "mlp"' in (root / ".dlgen.toml").read_text()
    assert "python -m my_proj.train" in result.stdout
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.startswith(".")]


def test_dry_run_lists_files_and_writes_nothing(tmp_path):
    result = dlgen("new", tmp_path / "demo", "--dry-run")
    assert result.exit_code == 0
    assert str(tmp_path / "demo" / "demo" / "train.py") in result.stdout
    assert not (tmp_path / "demo").exists()


def test_bad_input_exits_2_with_one_line(tmp_path):
    for args in (
        ["new", tmp_path / "1abc"],
        ["new", tmp_path / "demo", "--model", "resnet"],
        ["new", tmp_path / "demo", "--model", "gpt", "--task", "regression"],
    ):
        result = dlgen(*args)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dlgen: error: "), result.stderr
        assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_existing_target_needs_force(tmp_path):
    target = tmp_path / "demo"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = dlgen("new", target)
    assert result.exit_code == 2 and "use --force" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_force_keeps_user_files_and_backs_up_changes(tmp_path):
    target = tmp_path / "demo"
    assert dlgen("new", target).exit_code == 0
    train = target / "demo" / "train.py"
    original = train.read_text()
    train.write_text(original + "# my edit\n")
    (target / "notes.txt").write_text("mine")
    (target / "demo" / "model.py").unlink()
    result = dlgen("new", target, "--force")
    assert result.exit_code == 0, result.output
    assert train.read_text() == original
    assert (target / "demo" / "train.py.orig").read_text() == original + "# my edit\n"
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "demo" / "model.py").is_file()
    assert not (target / "demo" / "config.py.orig").exists()  # unchanged files: no backup


def test_list_text_and_json():
    text = dlgen("list").stdout
    data = json.loads(dlgen("list", "--json").stdout)
    for option in OPTIONS:
        assert option.flag in text
        entry = next(o for o in data["options"] if o["option"] == option.flag)
        assert [v["value"] for v in entry["values"]] == list(option.values)


def test_console_script_help_is_fast_and_never_imports_torch():
    code = (
        "import sys; from scaffold.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'black' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_interactive_asks_from_the_spec_and_reasks_bad_answers(tmp_path):
    replies = {  # per option, in the order asked; any other option takes its default ("")
        "model": ["transformr", "transformer"],  # a typo: explained, suggested, asked again
        "attention": ["manual"],  # asked because it applies to the transformer
        "amp": ["y"],
        "ema": ["y"],
        "ddp": ["y"],
        "fsdp": ["y", "n"],  # breaks a rule with ddp: explained, asked again
    }
    asked = [o.name for o in OPTIONS if o.name != "lang"]  # lang is given below
    answers = [r for name in asked for r in replies.get(name, [""])]
    result = runner.invoke(
        app, ["new", str(tmp_path / "demo"), "-i", "--lang", "zh"], input="\n".join(answers) + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "did you mean 'transformer'" in result.stderr
    assert "--ddp and --fsdp exclude each other" in result.stderr
    assert "lang:" not in result.stdout  # given on the command line: not asked
    state = (tmp_path / "demo/.dlgen.toml").read_text()
    for line in ['model = "transformer"', 'attention = "manual"', "amp = true", "ema = true"]:
        assert line in state
    assert "ddp = true" in state and "fsdp = false" in state and 'lang = "zh"' in state


def test_interactive_checks_the_name_before_asking(tmp_path):
    result = runner.invoke(app, ["new", str(tmp_path / "1abc"), "-i"], input="")
    assert result.exit_code == 2 and "model:" not in result.stdout
    assert not any(tmp_path.iterdir())


def one_error_line(result) -> str:
    """The contract for every mistake: exit 2, one line on stderr, no usage block."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlgen: error: "), result.stderr
    assert "Usage:" not in result.output and "Traceback" not in result.output
    return lines[0]


def test_argument_errors_are_one_line_not_a_usage_block(tmp_path):
    cases = {
        ("new",): "Missing argument 'PATH'",
        ("new", "x", "--model"): "'--model' requires an argument",
        ("new", "x", "--mdoel", "cnn"): "No such option: --mdoel",
        ("new", "x", "--amp=yes"): "does not take a value",
        ("frob",): "No such command 'frob'",
        ("add",): "Missing argument 'FEATURE...'",
        ("snippet",): "Missing argument 'NAME'",
        ("snippet", "mlp", "-o"): "'-o' requires an argument",
        ("list", "extra"): "unexpected extra argument",
        ("update", tmp_path, "--lang"): "'--lang' requires an argument",
    }
    for args, message in cases.items():
        line = one_error_line(dlgen(*args))
        assert message in line and "--help" in line, (args, line)
    assert not any(tmp_path.iterdir())


def test_interactive_without_a_terminal_is_one_line(tmp_path):
    result = runner.invoke(app, ["new", str(tmp_path / "demo"), "-i"], input="")
    assert "-i needs a terminal; give the options as flags" in one_error_line(result)
    assert not any(tmp_path.iterdir())


def test_help_is_whole_and_names_the_snippets():
    top = dlgen("--help").stdout
    assert "..." not in top.replace("[ARGS]...", "")  # no description cut off
    assert "merge the result into your files" in top  # update's whole first sentence
    text = dlgen("snippet", "--help").stdout
    assert "{NAME}" not in text and "<str>" not in text
    assert "snippet [OPTIONS] NAME" in text
    for s in SNIPPETS:
        assert s.name in text
    bare = dlgen()  # no command: the help, not an error
    assert bare.exit_code == 0 and "Commands:" in bare.stdout
