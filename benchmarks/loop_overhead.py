"""Whole-run time of the generated training loop against a bare hand-written loop: the same
model, data set, batch size, fused AdamW and number of steps, with no logging, evaluation,
checkpoints or telemetry. Both run in this process, alternately, and the median of the
repeats is reported. Run: python benchmarks/loop_overhead.py [--steps N] [--repeats N]"""

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scaffold.generate import generate
from scaffold.spec import build_spec

# Sizes where one step takes tens of milliseconds on a 2-core CPU, as a small GPU model would.
SIZES = {
    "gpt": dict(d_model=128, n_layers=4, n_heads=4, d_ff=512, seq_len=64, batch_size=32),
    "transformer": dict(d_model=128, n_layers=2, n_heads=4, d_ff=512, seq_len=64, batch_size=32),
}


def bare_loop(pkg, cfg, steps: int) -> float:
    """The loop a tutorial would write: shuffle, forward, loss, backward, step."""
    torch.manual_seed(cfg.seed)
    data = pkg["data"].build_datasets(cfg)
    cfg = type(cfg)(**{**cfg.__dict__, **data.sizes})
    model = pkg["model"].build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    start, done = time.perf_counter(), 0
    while done < steps:
        for x, y in loader:
            out = model(x)
            loss = F.cross_entropy(out.flatten(0, 1) if out.dim() == 3 else out, y.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def generated_loop(pkg, cfg, out_dir: Path) -> float:
    start = time.perf_counter()
    pkg["train"].train(cfg.__class__(**{**cfg.__dict__, "out_dir": str(out_dir)}))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for model, sizes in SIZES.items():
        name = f"bench_{model}"
        generate(build_spec(name, model=model, scheduler="none"), tmp / name)
        sys.path.insert(0, str(tmp / name))
        pkg = {m: importlib.import_module(f"{name}.{m}") for m in ("config", "data", "model")}
        pkg["train"] = importlib.import_module(f"{name}.train")
        every = args.steps  # events at the end only: the loop itself is what is measured
        cfg = pkg["config"].Config(
            device="cpu",
            max_steps=args.steps,
            log_every=every,
            eval_every=every,
            save_every=every,
            weight_decay=0.0,
            grad_clip=0.0,
            dropout=0.0,
            **sizes,
        )
        bare, ours = [], []
        for i in range(args.repeats + 1):  # the first pair warms up
            b = bare_loop(pkg, cfg, args.steps)
            o = generated_loop(pkg, cfg, tmp / f"run_{model}_{i}")
            if i:
                bare.append(b)
                ours.append(o)
        b, o = statistics.median(bare), statistics.median(ours)
        rows.append((model, args.steps, b, o))
        print(f"{model}: bare {b:.2f} s, generated {o:.2f} s, overhead {o / b - 1:+.1%}")
    print("\n| model | steps | bare loop | generated loop | overhead |\n|---|---|---|---|---|")
    for model, steps, b, o in rows:
        print(f"| {model} | {steps} | {b:.2f} s | {o:.2f} s | {o / b - 1:+.1%} |")


if __name__ == "__main__":
    main()
