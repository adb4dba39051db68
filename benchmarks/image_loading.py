"""Image folders in a generated cnn project (issue #14): loading speed, memory and the
cost of a resume.

    python benchmarks/image_loading.py [--images 2000] [--resume-steps 2000]

1. Loading: images/s of one pass of the training DataLoader over a folder of 64x64 PNGs
   (decoded by Pillow, random resized crop and flip, normalized) with 0 and 2 workers,
   against the same images preloaded as tensors (the .npz path).
2. Memory: peak RSS of a child process that trains one epoch on a folder of 1,000 and of
   8,000 PNGs (2 workers; the main process and the largest worker are reported apart),
   with MALLOC_MMAP_THRESHOLD_=65536 so that the peak tracks live memory.
3. Resume: one run of a tiny cnn on an image folder (2 workers, augmentation) saves at
   step 10 and at step N; the wall time of train() resuming from each and taking one
   step (in-process, after torch is imported), best of 3.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_folder(folder: Path, count: int, size: int = 64, classes: int = 4) -> Path:
    """count noisy PNGs of size x size, in class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"c{i % classes}" / f"{i}.png")
    return folder


def make_project(where: Path) -> Path:
    from scaffold.generate import generate
    from scaffold.spec import build_spec

    generate(build_spec("bench", model="cnn"), where / "bench")
    return where / "bench"


def child(project: str, job: str, args: dict) -> None:
    """Runs in its own process; prints one JSON line."""
    sys.path.insert(0, project)
    import torch
    from bench.config import Config
    from bench.data import KeyedTensors, build_datasets, loaders

    if job == "load":
        cfg = Config(**args["cfg"])
        data = build_datasets(cfg)
        if args["preloaded"]:  # the same images, decoded once into a tensor
            x = torch.stack([data.train[i][0] for i in range(len(data.train))])
            data.train = KeyedTensors(x, torch.zeros(len(x), dtype=torch.long))
        train, _ = loaders(data, cfg, torch.device("cpu"), 0, 1)
        next(iter(train))  # start the workers
        start, n = time.perf_counter(), 0
        for x, _ in train:
            n += len(x)
        print(json.dumps({"images_per_s": n / (time.perf_counter() - start)}))
    elif job == "memory":
        from bench.train import train

        train(Config(**args["cfg"]))
        self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps({"main_mb": self_kb / 1024, "worker_mb": worker_kb / 1024}))
    elif job == "resume":
        import bench.train as train_mod

        save = train_mod.save_checkpoint

        def save_and_keep(path, state, **kw):  # keep the step-10 checkpoint too
            save(path, state, **kw)
            if state["step"] == 10 and path.name == "last.pt":
                shutil.copy(path, path.parent / "step10.pt")

        train_mod.save_checkpoint = save_and_keep
        cfg = Config(**args["cfg"])
        out = Path(cfg.out_dir)
        start = time.perf_counter()
        train_mod.train(cfg)
        run_s = time.perf_counter() - start
        times = {}
        for name, step in (("step10.pt", 10), ("last.pt", args["steps"])):
            best = []
            for k in range(3):
                again = Config(
                    **{
                        **args["cfg"],
                        "resume": str(out / "checkpoints" / name),
                        "out_dir": str(out.parent / f"resume_{step}_{k}"),
                        "max_steps": step + 1,
                    }
                )
                start = time.perf_counter()
                train_mod.train(again)
                best.append(time.perf_counter() - start)
            times[step] = min(best)
        print(json.dumps({"run_s": run_s, "resume_s": times}))


# glibc keeps freed heap memory, so peak RSS would overstate what is live at the peak.
# Serving every allocation of 64 KiB or more with mmap returns it to the OS when freed.
MEMORY_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def run_child(project: Path, job: str, **args) -> dict:
    command = [sys.executable, __file__, "--child", str(project), job, json.dumps(args)]
    env = MEMORY_ENV if job == "memory" else None
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resume-steps", type=int, default=2000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        project, job, payload = args.child
        return child(project, job, json.loads(payload))

    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores,")
    print(f"# torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = make_project(tmp)
        base = dict(image_size=64, channels=[16, 32], batch_size=64, device="cpu")

        folder = write_folder(tmp / "speed", args.images)
        print("| loading one epoch of 64x64 PNGs | images/s |\n|---|---|")
        for label, workers, preloaded in (
            ("image folder, 0 workers", 0, False),
            ("image folder, 2 workers", 2, False),
            ("preloaded tensors, 0 workers", 0, True),
        ):
            cfg = dict(base, data_path=str(folder), num_workers=workers)
            result = run_child(project, "load", cfg=cfg, preloaded=preloaded)
            print(f"| {label} | {result['images_per_s']:.0f} |")

        print("\n| one epoch, 2 workers | main peak RSS | largest worker |")
        print("|---|---|---|")
        peaks = {}
        for count in (1000, 8000):
            folder = write_folder(tmp / f"mem{count}", count)
            cfg = dict(base, data_path=str(folder), num_workers=2, epochs=1)
            cfg.update(out_dir=str(tmp / f"memrun{count}"), eval_every=10**6)
            result = run_child(project, "memory", cfg=cfg)
            peaks[count] = result["main_mb"]
            row = f"| {count} images | {result['main_mb']:.0f} MB | {result['worker_mb']:.0f} MB |"
            print(row)
        preloaded = 8000 * 3 * 64 * 64 * 4 / 2**20
        print(f"\ndifference 8,000 - 1,000: {peaks[8000] - peaks[1000]:.0f} MB")
        print(f"(8,000 images preloaded as float32 would hold {preloaded:.0f} MB)\n")

        folder = write_folder(tmp / "resume", 256, size=16)
        steps = args.resume_steps
        cfg = dict(image_size=16, channels=[8], batch_size=8, device="cpu", num_workers=2)
        cfg.update(data_path=str(folder), out_dir=str(tmp / "resume_run" / "run"))
        cfg.update(max_steps=steps, save_every=10, eval_every=10**6, log_every=100)
        result = run_child(project, "resume", cfg=cfg, steps=steps)
        early, late = result["resume_s"]["10"], result["resume_s"][str(steps)]
        print(f"run of {steps} steps: {result['run_s']:.1f} s\n")
        print("| resume, then one step | wall time of train() |\n|---|---|")
        print(f"| from step 10 | {early:.2f} s |")
        print(f"| from step {steps} | {late:.2f} s |")
        print(f"\nratio late/early: {late / early:.2f}")


if __name__ == "__main__":
    main()
