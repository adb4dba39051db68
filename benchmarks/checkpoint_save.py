"""Checkpoint save time and peak CPU memory per rank of a generated --fsdp gpt of about
100M parameters (AdamW) on 2 CPU processes (torchrun, gloo): the full-state save that
--fsdp projects used before (gather everything to rank 0, one torch.save), against the
sharded DCP save they use now, synchronous and asynchronous. For the asynchronous save,
"blocked" is how long save() holds training up (staging the shards in memory); the
writing goes on in a background thread until the next save waits for it.

    python benchmarks/checkpoint_save.py [--repeat 3]

Each method saves once untimed (a warm-up), then --repeat times; the table gives medians.
Each method runs in its own torchrun job, so that each rank's peak RSS (the process's
high-water mark, read after the save and minus its value once the model and the
optimizer state exist) belongs to that method alone. The ranks run with
MALLOC_MMAP_THRESHOLD_=65536, so that freed tensors leave the RSS at once.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(vocab_size=64, seq_len=256, d_model=768, n_heads=12, n_layers=14, d_ff=3072)
METHODS = ["full", "dcp", "async"]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(project: str, method: str, out: str, repeat: int) -> None:
    import torch
    import torch.distributed as dist

    sys.path.insert(0, project)
    from bench.checkpoint import Saver
    from bench.config import Config
    from bench.distributed import Sharded, parallelize
    from bench.model import build_model
    from bench.optim import configure_optimizer
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = Config(**SIZES, device="cpu", keep_last=1, async_save=method == "async")
    torch.manual_seed(0)
    model = parallelize(build_model(cfg), world)
    optimizer = configure_optimizer(model, cfg, torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # the AdamW moments exist, as in a real run
    optimizer.zero_grad()
    params = sum(p.numel() for p in model.parameters())  # DTensor: the global size
    dist.barrier()
    baseline = peak_mib()
    saver = Saver(Path(out), cfg)
    times, blocked = [], []
    # step 0 is a warm-up, as a run's first save is: the async save's gloo group is made
    # then, once per run
    for step in range(repeat + 1):
        dist.barrier()
        start = time.perf_counter()
        if method == "full":
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = {
                "model": get_model_state_dict(model, options=options),
                "optimizer": get_optimizer_state_dict(model, optimizer, options=options),
            }
            if rank == 0:
                torch.save(state, Path(out) / "last.pt")
            del state
            dist.barrier()
        else:
            state = {
                "model": Sharded(model).state_dict(),
                "optimizer": Sharded(model, optimizer).state_dict(),
                "step": step,
                "world": world,
            }
            saver.save(state, step)
            blocked.append(time.perf_counter() - start)
            saver.wait()
            dist.barrier()
        times.append(time.perf_counter() - start)
    times, blocked = times[1:], blocked[1:]
    report = dict(
        rank=rank,
        method=method,
        params=params,
        save_s=statistics.median(times),
        blocked_s=statistics.median(blocked) if blocked else None,
        peak_mib=peak_mib() - baseline,
        baseline_mib=baseline,
    )
    print(json.dumps(report), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from scaffold.generate import generate
    from scaffold.spec import build_spec

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench"
        generate(build_spec("bench", model="gpt", fsdp=True), project)
        for method in METHODS:
            out = Path(tmp) / f"out-{method}"
            out.mkdir()
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
            cmd = ["torchrun", "--standalone", "--nproc-per-node=2", __file__]
            cmd += ["--worker", str(project), method, str(out), str(args.repeat)]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if result.returncode:
                sys.exit(result.stderr[-3000:])
            reports = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
            rows[method] = sorted(reports, key=lambda r: r["rank"])
            print(method, rows[method], file=sys.stderr)
    params = rows["full"][0]["params"]
    sync = rows["dcp"][0]["save_s"]
    names = {
        "full": "full state to rank 0, one torch.save",
        "dcp": "DCP, synchronous",
        "async": "DCP, async_save",
    }
    print(f"gpt of {params / 1e6:.1f}M parameters, AdamW, 2 CPU ranks (gloo)\n")
    print("| save | time | training blocked | peak extra RSS rank 0 | rank 1 |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        r0, r1 = rows[method]
        blocked = r0["blocked_s"] if r0["blocked_s"] is not None else r0["save_s"]
        print(
            f"| {names[method]} | {r0['save_s']:.2f} s | {blocked:.2f} s "
            f"({blocked / sync:.0%} of sync DCP) | {r0['peak_mib']:.0f} MiB "
            f"| {r1['peak_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
