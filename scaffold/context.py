"""Spec -> rendering context: the only thing templates see."""

from __future__ import annotations

from scaffold import __version__
from scaffold.spec import OPTIONS, ProjectSpec, config_fields, config_help

# How each model's generated tests keep to a few seconds on a CPU: Config overrides, the
# steps in which the validation loss must fall below loss_ratio of its start, and the
# length of the exact-resume run (cut in half, mid-epoch).
TEST_PROFILES = {
    # mlp at lr 1e-3 needs 120 steps: at 60 a schedule that decays early (step) ends near
    # the threshold, so the test would pass or fail by schedule and seed.
    "mlp": dict(
        tiny_overrides={"num_samples": 512}, tiny_steps=120, loss_ratio=0.7, resume_steps=18
    ),
    "cnn": dict(
        tiny_overrides={"num_samples": 512, "channels": [8, 16], "image_size": 16},
        tiny_steps=60,
        loss_ratio=0.8,
        resume_steps=18,
    ),
    "transformer": dict(
        tiny_overrides={
            "num_samples": 512,
            "d_model": 32,
            "d_ff": 64,
            "n_layers": 1,
            "seq_len": 16,
        },
        tiny_lr={"adam": 3e-3, "sgd": 0.3},
        tiny_steps=120,
        loss_ratio=0.8,
        resume_steps=18,
    ),
    "gpt": dict(
        tiny_overrides={
            "corpus_chars": 4000,
            "d_model": 32,
            "d_ff": 64,
            "n_layers": 1,
            "seq_len": 16,
            "batch_size": 16,
        },
        tiny_lr={"adam": 1e-2, "sgd": 0.3},
        tiny_steps=120,
        loss_ratio=0.8,
        resume_steps=18,
    ),
}


def command_line(spec: ProjectSpec) -> str:
    """The `dlgen new` command that makes this project, with the non-default options."""
    parts = ["dlgen new", spec.name]
    for o in OPTIONS:
        value = getattr(spec, o.name)
        if value != o.default:
            parts.append(
                o.flag
                if value is True
                else f"--no-{o.name}" if value is False else f"{o.flag} {value}"
            )
    return " ".join(parts)


# The formatter and linter versions that --tooling pins (pre-commit and the workflow alike):
# the versions dlgen's own tests were last run with.
TOOL_VERSIONS = {"black_version": "26.10.1", "ruff_version": "0.17.6"}


def build_context(spec: ProjectSpec) -> dict:
    """Everything a template may use, derived from the validated spec alone."""
    fields = config_fields(spec)
    ctx = {o.name: getattr(spec, o.name) for o in OPTIONS}
    ctx.update(
        name=spec.name,
        pkg=spec.package,
        dlgen_version=__version__,
        config_fields=fields,
        # Each field's help in the project's language: its --help and configs/default.toml.
        config_help={f.name: config_help(f, spec.lang) for f in fields},
        has_list_fields=any(f.type.startswith("list") for f in fields),
        command=command_line(spec),
        # run.json's record of the options; lang and teach change only the comments.
        option_values=[
            (o.name, getattr(spec, o.name)) for o in OPTIONS if o.name not in ("lang", "teach")
        ],
        is_lm=spec.model == "gpt",
        distributed=spec.ddp or spec.fsdp,
        # The attribute that holds each model's repeated blocks (FSDP shards each one).
        blocks_attr={"mlp": "blocks", "cnn": "stages", "transformer": "layers", "gpt": "blocks"}[
            spec.model
        ],
        classification=spec.model != "gpt" and spec.task == "classification",
        regression=spec.model != "gpt" and spec.task == "regression",
        # The data file format each model reads, named once for the README, the CLI help and data.py.
        data_format=(
            {
                "mlp": "a CSV file with a header row, numeric feature columns and a target column",
                "cnn": "a folder with one sub-folder of images per class, or a .npz with x (N, C, H, W) and y (N)",
                "transformer": "a TSV file of label<TAB>text lines",
                "gpt": "a plain UTF-8 text file, or a folder of token shards from prepare",
            }[spec.model]
            if spec.lang == "en"
            else {
                "mlp": "带表头的 CSV 文件：若干数值特征列和一个目标列",
                "cnn": "每个类别一个子目录的图像目录，或含 x (N, C, H, W) 和 y (N) 的 .npz 文件",
                "transformer": "每行为 label<TAB>text 的 TSV 文件",
                "gpt": "纯文本文件（UTF-8 编码），或由 prepare 生成的词元分片目录",
            }[spec.model]
        ),
    )
    profile = dict(TEST_PROFILES[spec.model])
    # Small transformers learn in a few seconds only at a higher rate, and SGD needs one
    # far higher than Adam's; the test's loss threshold stays the same for every optimizer.
    lrs = profile.pop("tiny_lr", None)
    if lrs:
        lr = lrs["sgd" if spec.optimizer == "sgd" else "adam"]
        profile["tiny_overrides"] = {**profile["tiny_overrides"], "lr": lr}
    ctx.update(profile)
    ctx.update(TOOL_VERSIONS)
    return ctx
