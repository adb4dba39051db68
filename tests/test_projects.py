"""Generated projects train, resume exactly and pass their own tests."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ProjectImport, assert_project_tests_pass, make_project, wait_until

from scaffold.spec import OPTION_BY_NAME

torch = pytest.importorskip("torch")


def val_events(out_dir):
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["split"] == "val"]


@pytest.mark.parametrize("optimizer", OPTION_BY_NAME["optimizer"].values)
@pytest.mark.parametrize("task", OPTION_BY_NAME["task"].values)
def test_mlp_trains_below_chance(project, tmp_path, task, optimizer):
    with project(f"mlp_{task[:3]}_{optimizer}", task=task, optimizer=optimizer) as p:
        Config = p.module("config").Config
        cfg = Config(out_dir=str(tmp_path / "run"), device="cpu", max_steps=150, eval_every=150)
        metrics = p.module("train").train(cfg)
    val = val_events(tmp_path / "run")
    chance = 1.0 if task == "regression" else torch.log(torch.tensor(4.0)).item()
    assert val[0]["loss"] > 0.8 * chance
    assert metrics["loss"] < 0.6 * chance


def test_mlp_trains_on_a_csv_with_text_labels(project, tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 3, generator=g)
    labels = ["cat" if row[0] + row[1] > 0 else "dog" for row in x.tolist()]
    csv = tmp_path / "pets.csv"
    rows = [f"{a:.4f},{b:.4f},{c:.4f},{y}" for (a, b, c), y in zip(x.tolist(), labels, strict=True)]
    csv.write_text("a,b,c,species\n" + "\n".join(rows) + "\n")
    with project("csvproj") as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            data_path=str(csv),
            target="species",
            batch_size=32,
            max_steps=120,
            eval_every=120,
        )
        metrics = p.module("train").train(cfg)
        ckpt = p.module("checkpoint").load_checkpoint(tmp_path / "run/checkpoints/best.pt")
    assert metrics["accuracy"] > 0.9
    assert ckpt["config"]["input_dim"] == 3 and ckpt["config"]["num_classes"] == 2
    assert ckpt["data"]["classes"] == ["cat", "dog"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", [{}, {"task": "regression", "optimizer": "sgd", "scheduler": "onecycle"}]
)
def test_generated_test_suite_passes(tmp_path, options):
    root = make_project(tmp_path, "suite", **options)
    assert_project_tests_pass(root, timeout=300)


@pytest.mark.slow
def test_kill_9_then_resume_auto_is_exact(tmp_path):
    """The user's story: train, kill -9 after a checkpoint, rerun with --resume auto."""
    root = make_project(tmp_path, "killme")
    args = ["--max-steps", "400", "--save-every", "50", "--eval-every", "100", "--device", "cpu"]
    run = [sys.executable, "-m", "killme.train", *args]
    subprocess.run(run + ["--out-dir", "full"], cwd=root, check=True, capture_output=True)

    proc = subprocess.Popen(run + ["--out-dir", "cut"], cwd=root, stderr=subprocess.DEVNULL)
    metrics = root / "cut" / "metrics.jsonl"
    wait_until((root / "cut/checkpoints/last.prev.pt").exists, 120)  # a mid-run checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert metrics.exists()
    subprocess.run(
        run + ["--out-dir", "cut", "--resume", "auto"], cwd=root, check=True, capture_output=True
    )
    full = torch.load(root / "full/checkpoints/last.pt", weights_only=True)
    cut = torch.load(root / "cut/checkpoints/last.pt", weights_only=True)
    assert cut["step"] == full["step"] == 400
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    # Every event is identical except the measured timings, which the project names.
    with ProjectImport(root, "killme") as p:
        timing = p.module("metrics").TIMING

    def events(path):
        rows = map(json.loads, path.read_text().splitlines())
        return [{k: v for k, v in row.items() if k not in timing} for row in rows]

    assert events(root / "full/metrics.jsonl") == events(metrics)
