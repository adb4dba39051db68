import pytest

from scaffold.errors import SpecError
from scaffold.spec import OPTIONS, ProjectSpec, build_spec, config_fields, package_name


def test_defaults_match_the_typed_spec():
    spec = build_spec("demo")
    for option in OPTIONS:
        assert getattr(spec, option.name) == option.default
        assert ProjectSpec.__dataclass_fields__[option.name].default == option.default


@pytest.mark.parametrize(
    "name, package", [("demo", "demo"), ("My-Proj", "my_proj"), ("a1_b-c", "a1_b_c")]
)
def test_package_name(name, package):
    assert build_spec(name).package == package == package_name(name)


@pytest.mark.parametrize(
    "name, why",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1proj", "starts with a digit"),
        ("class", "keyword"),
        ("torch", "shadow"),
        ("json", "shadow"),
        ("random", "shadow"),
        ("runs", "project's own runs/ folder"),  # else hidden by the project's .gitignore
        ("Checkpoints", "project's own checkpoints/ folder"),
        ("data", "project's own data/ folder"),
        ("notebooks", "project's own notebooks/ folder"),
        ("tensorboard", "shadow"),  # --tensorboard imports it
        ("PIL", "shadow"),
        ("mlflow", "shadow"),
        ("safetensors", "shadow"),
        ("my proj", "only ASCII letters"),
        ("naïve$", "only ASCII letters"),
        ("__init__", "start with a letter"),
        ("_x", "start with a letter"),
        ("a" * 65, "longer than 64"),
    ],
)
def test_bad_names_are_refused_with_a_suggestion(name, why):
    with pytest.raises(SpecError) as e:
        build_spec(name)
    message = str(e.value)
    assert why in message and "try '" in message
    suggestion = message.rsplit("try ", 1)[1].strip("'")
    build_spec(suggestion)  # the suggestion itself is valid


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"model": "resnet"}, "invalid value 'resnet' for --model"),
        ({"model": "gtp"}, "did you mean 'gpt'"),
        ({"optimizer": "adam_w"}, "did you mean 'adamw'"),
        ({"model": "gpt", "task": "regression"}, "--task regression does not apply"),
        ({"model": "mlp", "attention": "manual"}, "--attention applies only to --model"),
        ({"lang": "fr"}, "choose one of: en, zh"),
    ],
)
def test_bad_options_are_refused(options, needle):
    with pytest.raises(SpecError, match=needle.replace("(", r"\(").replace("?", r"\?")):
        build_spec("demo", **options)


def test_config_fields_follow_the_options():
    names = [f.name for f in config_fields(build_spec("demo", scheduler="step"))]
    assert "step_size" in names and "warmup_steps" not in names
    sgd = {f.name: f for f in config_fields(build_spec("demo", optimizer="sgd"))}
    assert sgd["lr"].default == 0.05 and "betas" not in sgd
    assert "label_smoothing" not in [
        f.name for f in config_fields(build_spec("d", task="regression"))
    ]


def test_answers_rebuild_the_same_spec():
    for options in ({}, {"model": "gpt", "attention": "manual", "amp": True}, {"model": "cnn"}):
        spec = build_spec("demo", **options)
        assert build_spec("demo", **spec.answers()) == spec
    assert "attention" not in build_spec("demo", model="mlp").answers()


def test_dlgen_itself_is_black_and_ruff_clean():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dirs = [str(root / d) for d in ("scaffold", "tests", "scripts", "benchmarks")]
    subprocess.run([sys.executable, "-m", "black", "--check", "-q", *dirs], check=True, cwd=root)
    subprocess.run([sys.executable, "-m", "ruff", "check", "-q", *dirs], check=True, cwd=root)


def test_options_doc_is_generated_from_the_spec():
    from scaffold.docs import DOC, options_markdown

    assert DOC.read_text(encoding="utf-8") == options_markdown(), "run: python -m scaffold.docs"


@pytest.mark.parametrize("option, value", [("ema", "false"), ("amp", 1), ("model", 3)])
def test_option_values_of_the_wrong_type_are_refused(option, value):
    """As a hand-edited .dlgen.toml gives them: `ema = "false"` must not turn EMA on."""
    with pytest.raises(SpecError, match=f"--{option}"):
        build_spec("demo", **{option: value})


def test_tracker_tensorboard_is_the_tensorboard_flag():
    # The issue's `--tracker tensorboard`: the same project as `--tensorboard`, recorded so.
    spec = build_spec("x", tracker="tensorboard")
    assert (spec.tracker, spec.tensorboard) == ("none", True)
    assert spec == build_spec("x", tensorboard=True)
    assert spec.answers()["tracker"] == "none"
