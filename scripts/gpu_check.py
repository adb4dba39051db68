"""Train the key option combinations on a GPU and print one table.

    python scripts/gpu_check.py [--steps 300] [--device cuda]

Each combination is generated into a temporary folder and trained in this process. A row
passes when the final validation loss is finite and below 70% of the loss at step 0.
"""

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaffold.generate import generate  # noqa: E402
from scaffold.spec import build_spec  # noqa: E402

# (label, generation options, config overrides)
COMBOS = [
    ("gpt fp16 + GradScaler", {"model": "gpt", "amp": True}, {"precision": "fp16"}),
    ("gpt bf16", {"model": "gpt", "amp": True}, {"precision": "bf16"}),
    ("gpt compile", {"model": "gpt", "compile": True}, {}),
    ("gpt grad checkpointing", {"model": "gpt", "grad_checkpointing": True}, {}),
    ("transformer bf16 + ckpt", {"model": "transformer", "amp": True, "grad_checkpointing": True},
     {"precision": "bf16"}),
    ("cnn fp16 + ema", {"model": "cnn", "amp": True, "ema": True}, {"precision": "fp16"}),
]


def run(label, options, overrides, steps, device, tmp):
    import torch

    name = "g_" + "".join(c if c.isalnum() else "_" for c in label.lower())
    generate(build_spec(name, **options), tmp / name)
    sys.path.insert(0, str(tmp / name))
    try:
        Config = importlib.import_module(f"{name}.config").Config
        train = importlib.import_module(f"{name}.train").train
        cfg = Config(out_dir=str(tmp / name / "run"), device=device, max_steps=steps,
                     eval_every=steps, **overrides)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        metrics = train(cfg)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
        lines = (tmp / name / "run" / "metrics.jsonl").read_text().splitlines()
        first = next(e for e in map(__import__("json").loads, lines) if e["split"] == "val")
        ok = metrics["loss"] == metrics["loss"] and metrics["loss"] < 0.7 * first["loss"]
        return f"| {label} | {steps / seconds:.1f} | {peak / 2**20:.0f} MiB | {metrics['loss']:.4f} | {'pass' if ok else 'FAIL'} |", ok
    except Exception as e:  # one broken row must not hide the others
        return f"| {label} | - | - | - | FAIL: {type(e).__name__}: {e} |", False
    finally:
        sys.path.remove(str(tmp / name))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine; nothing to check.")
        return 0
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"gpu_check on {where}, torch {torch.__version__}, {args.steps} steps each\n")
    print("| combination | steps/s | peak memory | final val loss | result |")
    print("|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    ok = True
    for label, options, overrides in COMBOS:
        row, passed = run(label, options, overrides, args.steps, args.device, tmp)
        print(row, flush=True)
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
