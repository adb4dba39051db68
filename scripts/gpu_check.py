"""Train the key option combinations on a GPU and print one table.

    python scripts/gpu_check.py [--steps 300] [--device cuda]

Each combination is generated into a temporary folder and trained in this process. A row
passes when the final validation loss is finite and below 70% of the loss at step 0.
"""

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaffold.context import TEST_PROFILES
from scaffold.generate import generate
from scaffold.spec import build_spec

# (label, generation options, config overrides)
COMBOS = [
    ("gpt fp16 + GradScaler", {"model": "gpt", "amp": True}, {"precision": "fp16"}),
    ("gpt bf16", {"model": "gpt", "amp": True}, {"precision": "bf16"}),
    ("gpt compile", {"model": "gpt", "compile": True}, {}),
    ("gpt grad checkpointing", {"model": "gpt", "grad_checkpointing": True}, {}),
    (
        "transformer bf16 + ckpt",
        {"model": "transformer", "amp": True, "grad_checkpointing": True},
        {"precision": "bf16"},
    ),
    ("cnn fp16 + ema", {"model": "cnn", "amp": True, "ema": True}, {"precision": "fp16"}),
    # Launched with torchrun at world size 1, so the NCCL process group really starts.
    ("gpt ddp nccl x1 (torchrun)", {"model": "gpt", "ddp": True}, {}),
]


def flags(overrides: dict) -> list[str]:
    """Config overrides as train's command-line flags."""
    out = []
    for key, value in overrides.items():
        values = value if isinstance(value, list) else [value]
        out += ["--" + key.replace("_", "-"), *map(str, values)]
    return out


def run_torchrun(label, name, steps, device, tmp, overrides):
    """One process under torchrun: the distributed path of a --ddp project."""
    import subprocess

    start = time.perf_counter()
    result = subprocess.run(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node=1",
            "-m",
            f"{name}.train",
            "--device",
            device,
            "--max-steps",
            str(steps),
            "--eval-every",
            str(steps),
            "--out-dir",
            "run",
            *flags(overrides),
        ],
        cwd=tmp / name,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start  # includes start-up, so steps/s is a lower bound
    if result.returncode != 0:
        return f"| {label} | - | - | - | FAIL: {result.stderr.strip().splitlines()[-1]} |", False
    events = [json.loads(line) for line in (tmp / name / "run/metrics.jsonl").open()]
    val = [e for e in events if e["split"] == "val"]
    ok = val[-1]["loss"] < 0.7 * val[0]["loss"]
    row = f"| {label} | {steps / seconds:.1f} | - | {val[-1]['loss']:.4f} | {'pass' if ok else 'FAIL'} |"
    return row, ok


def run(label, options, overrides, steps, device, tmp):
    import torch

    name = "g_" + "".join(c if c.isalnum() else "_" for c in label.lower())
    generate(build_spec(name, **options), tmp / name)
    if options.get("ddp"):
        return run_torchrun(label, name, steps, device, tmp, overrides)
    sys.path.insert(0, str(tmp / name))
    try:
        Config = importlib.import_module(f"{name}.config").Config
        train = importlib.import_module(f"{name}.train").train
        cfg = Config(
            out_dir=str(tmp / name / "run"),
            device=device,
            max_steps=steps,
            eval_every=steps,
            **overrides,
        )
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        metrics = train(cfg)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
        lines = (tmp / name / "run" / "metrics.jsonl").read_text().splitlines()
        first = next(e for e in map(json.loads, lines) if e["split"] == "val")
        ok = metrics["loss"] == metrics["loss"] and metrics["loss"] < 0.7 * first["loss"]
        return (
            f"| {label} | {steps / seconds:.1f} | {peak / 2**20:.0f} MiB | {metrics['loss']:.4f} | {'pass' if ok else 'FAIL'} |",
            ok,
        )
    except Exception as e:  # one broken row must not hide the others
        return f"| {label} | - | - | - | FAIL: {type(e).__name__}: {e} |", False
    finally:
        sys.path.remove(str(tmp / name))


# GPT-2 small's shape (Radford et al. 2019): 12 layers, d768, 12 heads, context 1024. The
# vocabulary is the synthetic text's characters, not 50257 BPE tokens, so the parameter
# count is that of the blocks; MFU counts the FLOPs of the model actually trained.
GPT2_SMALL = dict(
    d_model=768,
    n_layers=12,
    n_heads=12,
    d_ff=3072,
    seq_len=1024,
    batch_size=16,
    corpus_chars=2_000_000,
    dropout=0.0,
)


def run_throughput(label, compile_model, steps, device, tmp):
    """tokens/s, MFU and peak memory from the project's own telemetry (last train event)."""
    name = "t_" + ("compiled" if compile_model else "eager")
    options = {"model": "gpt", "amp": True, "compile": compile_model}
    generate(build_spec(name, **options), tmp / name)
    sys.path.insert(0, str(tmp / name))
    try:
        Config = importlib.import_module(f"{name}.config").Config
        train = importlib.import_module(f"{name}.train").train
        extra = {"compile": True} if compile_model else {}
        every = max(1, steps // 3)  # the first window includes compilation; report the last
        train(
            Config(
                out_dir=str(tmp / name / "run"),
                device=device,
                max_steps=steps,
                log_every=every,
                eval_every=steps,
                save_every=steps,
                precision="bf16",
                **GPT2_SMALL,
                **extra,
            )
        )
        lines = (tmp / name / "run" / "metrics.jsonl").read_text().splitlines()
        last = [e for e in map(json.loads, lines) if e["split"] == "train"][-1]
        mfu = f"{last['mfu']:.1%}" if "mfu" in last else "unknown GPU"
        return (
            f"| {label} | {last['tokens_per_s']:,.0f} | {mfu} | "
            f"{last.get('max_memory', 0) / 2**30:.1f} GiB | {last['step_time'] * 1e3:.0f} ms |"
        )
    except Exception as e:  # one broken row must not hide the others
        return f"| {label} | FAIL: {type(e).__name__}: {e} | | | |"
    finally:
        sys.path.remove(str(tmp / name))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", default="", help="comma-separated parts of row labels")
    parser.add_argument(
        "--gpt2-steps", type=int, default=60, help="steps of each GPT-2-small row; 0 = skip"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the test suite's tiny sizes: a smoke run on CPU"
    )
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
    wanted = [w for w in args.only.split(",") if w]
    for label, options, overrides in COMBOS:
        if wanted and not any(w in label for w in wanted):
            continue
        if args.tiny:
            overrides = {**TEST_PROFILES[options["model"]]["tiny_overrides"], **overrides}
        row, passed = run(label, options, overrides, args.steps, args.device, tmp)
        print(row, flush=True)
        ok &= passed
    if args.gpt2_steps and args.device.startswith("cuda"):
        print("\nGPT-2 small (12 x d768, T=1024, batch 16), bf16, from the metrics telemetry\n")
        print("| run | tokens/s | MFU | peak memory | step time |")
        print("|---|---|---|---|---|")
        for label, compiled in (("bf16", False), ("bf16 + compile", True)):
            print(run_throughput(label, compiled, args.gpt2_steps, args.device, tmp), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
