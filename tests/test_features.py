"""--amp, --grad-checkpointing, --compile and --ema, alone and together."""

import pytest
from conftest import assert_project_tests_pass, make_project

from scaffold.generate import render
from scaffold.spec import OPTION_BY_NAME, build_spec

torch = pytest.importorskip("torch")

FLAGS = ("amp", "grad_checkpointing", "compile", "ema")


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_adds_only_its_own_code(flag):
    plain = render(build_spec("demo", model="cnn"))
    flagged = render(build_spec("demo", model="cnn", **{flag: True}))
    needle = {
        "amp": "GradScaler",
        "grad_checkpointing": "torch.utils.checkpoint",
        "compile": ".compile()",
        "ema": "AveragedModel",
    }[flag]
    assert not any(needle in t for t in plain.values())
    assert any(needle in t for t in flagged.values())


def test_amp_uses_the_modern_api_and_unscales_before_clipping():
    files = render(build_spec("demo", amp=True))
    train, precision = files["demo/train.py"], files["demo/precision.py"]
    assert (
        "torch.amp.GradScaler(" in precision and "enabled=self.dtype == torch.float16" in precision
    )
    assert "torch.cuda.amp" not in train + precision
    assert train.index("scaler.unscale_(optimizer)") < train.index("clip_grad_norm_")


@pytest.mark.slow
@pytest.mark.parametrize("model", OPTION_BY_NAME["model"].values)
def test_all_flags_together_pass_the_project_tests(tmp_path, model):
    root = make_project(
        tmp_path,
        f"all_{model}",
        model=model,
        amp=True,
        ema=True,
        compile=True,
        grad_checkpointing=True,
    )
    assert_project_tests_pass(root)


@pytest.mark.slow
def test_compiled_checkpoints_load_into_plain_models(project, tmp_path):
    with project("compiled", model="gpt", compile=True) as p:
        Config = p.module("config").Config
        cfg = Config(
            out_dir=str(tmp_path),
            device="cpu",
            max_steps=3,
            eval_every=1,  # eval mode four times, each ending on a shorter batch
            batch_size=8,
            d_model=32,
            d_ff=64,
            n_layers=1,
            seq_len=16,
            corpus_chars=3000,
        )
        from torch._dynamo.utils import counters

        counters.clear()
        p.module("train").train(cfg)
        # One graph, the training step's: evaluation runs eagerly, so switching to eval
        # mode and the short last validation batch compile nothing more.
        assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "checkpoints/last.pt")
        assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
        plain = p.module("model").build_model(Config(**{**ckpt["config"], "compile": False}))
        plain.load_state_dict(ckpt["model"])  # strict: the keys match
