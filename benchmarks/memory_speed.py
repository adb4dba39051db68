"""Step time and peak memory of generated gpt and transformer projects (8 layers,
sequence length 256) with and without gradient checkpointing, AMP and compile.

    python benchmarks/memory_speed.py [--write docs/benchmarks.md]

Each measurement runs in a child process. CPU peak memory is the child's peak RSS after
the training steps minus its peak RSS once the model is built and the optimizer state and
gradients allocated (the baseline): what remains is activation memory. That child runs
with MALLOC_MMAP_THRESHOLD_=65536, so freed tensors leave the RSS at once and its peak
tracks live memory; step times come from a second child with the usual allocator. On
CUDA memory is torch.cuda.max_memory_allocated over the steps.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(d_model=256, n_heads=4, n_layers=8, d_ff=1024, seq_len=256, vocab_size=64)
BATCH = 8
# glibc keeps freed heap memory, so peak RSS would overstate what is live at the peak.
# Serving every allocation of 64 KiB or more with mmap returns it to the OS when freed.
MEMORY_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
CASES = [
    ("baseline", {}),
    ("grad checkpointing", {"grad_checkpointing": True}),
    ("amp bf16", {"precision": "bf16"}),
    ("compile", {"compile": True}),
]


def child(project: str, package: str, overrides: dict, steps: int) -> dict:
    import torch

    sys.path.insert(0, project)
    config = __import__(f"{package}.config", fromlist=["Config"])
    train = __import__(f"{package}.train", fromlist=["train"])
    model_mod = __import__(f"{package}.model", fromlist=["build_model"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fields = {"grad_checkpointing": False, "compile": False, "precision": "fp32", **overrides}
    cfg = config.Config(**SIZES, **fields)
    model = model_mod.build_model(cfg).to(device)
    optimizer = train.configure_optimizer(model, cfg, device)
    # The baseline holds the weights, the optimizer state and one set of gradients, so
    # what the steps add on top of it is activation memory (and temporaries).
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    if cfg.compile:
        model.compile()
    dtype = train.amp_dtype(cfg.precision, device)
    x = torch.randint(2, SIZES["vocab_size"], (BATCH, SIZES["seq_len"]), device=device)
    y = x if package.startswith("b_gpt") else torch.randint(4, (BATCH,), device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = train.loss_fn(cfg, model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()  # warm-up (and compilation)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)  # robust to the odd slow step on a shared machine
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"step_s": seconds, "first_step_s": first, "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--write", help="append the table to this markdown file")
    parser.add_argument("--child", nargs=3, metavar=("PROJECT", "PACKAGE", "JSON"))
    args = parser.parse_args()
    if args.child:
        project, package, overrides = args.child
        print(json.dumps(child(project, package, json.loads(overrides), args.steps)))
        return

    sys.path.insert(0, str(ROOT))
    from scaffold.generate import generate
    from scaffold.spec import build_spec

    tmp = Path(tempfile.mkdtemp())
    rows = []
    for model in ("gpt", "transformer"):
        name = f"b_{model}"
        spec = build_spec(name, model=model, amp=True, grad_checkpointing=True, compile=True)
        generate(spec, tmp / name)
        results = {}
        for label, overrides in CASES:
            runs = []
            for env in (os.environ, MEMORY_ENV):  # time with the usual allocator, memory with mmap
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--steps",
                        str(args.steps),
                        "--child",
                        str(tmp / name),
                        name,
                        json.dumps(overrides),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                ).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            results[label] = {**runs[0], "peak_bytes": runs[1]["peak_bytes"]}
            print(model, label, results[label], flush=True)
        base = results["baseline"]
        for label, r in results.items():
            rows.append(
                f"| {model} | {label} | {r['step_s'] * 1000:.0f} ms "
                f"({r['step_s'] / base['step_s']:.2f}x) | {r['peak_bytes'] / 2**20:.0f} MiB "
                f"({r['peak_bytes'] / base['peak_bytes']:.2f}x) | {r['first_step_s']:.1f} s |"
            )
    import torch

    where = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "CPU"
    )
    table = "\n".join(
        [
            f"Machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"d_model {SIZES['d_model']}, 8 layers, sequence length 256, batch {BATCH}.",
            "",
            "| model | variant | step time | peak training memory | first step |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.write:
        with open(args.write, "a") as f:
            f.write(
                "\n## Memory and speed (`python benchmarks/memory_speed.py`)\n\n" + table + "\n"
            )


if __name__ == "__main__":
    main()
