"""On a CUDA GPU (skipped elsewhere): the training step never waits for the device,
and the telemetry is logged.
"""

import json

import pytest
import torch

import text_classifier.train as train_module
from text_classifier.config import Config

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def test_a_short_cuda_run_never_syncs_inside_a_step(tmp_path, monkeypatch):
    """Inside every training step, CUDA's sync debug mode turns any host read into an
    error.
    """
    real_step = train_module.train_step

    def strict_step(*args):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real_step(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(train_module, "train_step", strict_step)
    steps = 30
    cfg = Config(
        out_dir=str(tmp_path),
        device="cuda",
        max_steps=steps,
        log_every=10,
        eval_every=steps,
        save_every=steps,
        precision="auto",  # bf16 on every GPU that has it
    )
    metrics = train_module.train(cfg)
    assert all(v == v for v in metrics.values())  # no NaN
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    logged = [e for e in map(json.loads, lines) if e["split"] == "train"]
    assert [e["step"] for e in logged] == [10, 20, 30]
    for key in ("grad_norm", "step_time", "samples_per_s", "max_memory"):
        assert all(e[key] > 0 for e in logged), key
