"""Property-based: any name and any option values give a clean exit-2 error, or a project
whose code is black-clean and compiles."""

import black
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
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output)
    if result.exit_code == 2:
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
