"""The run folder explains itself: config.toml reproduces the run, run.json says what
ran where, summary.json what came out.
"""

import dataclasses
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from image_classifier.config import Config

# How this project was generated, recorded in every run.json.
GENERATED = {
    "dlgen": "0.1.0",
    "options": {
        "model": "cnn",
        "task": "classification",
        "optimizer": "adamw",
        "scheduler": "warmup-cosine",
        "attention": "sdpa",
        "amp": False,
        "grad_checkpointing": True,
        "compile": False,
        "ema": False,
        "tensorboard": False,
        "tracker": "none",
        "sweep": False,
        "ddp": False,
        "fsdp": True,
        "tooling": False,
    },
}
ROOT = Path(__file__).resolve().parent.parent


def write_json(path: Path, data: dict) -> None:
    """Write beside the target, then rename: a reader (the report on a running run)
    never sees half a file.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """A run.json or summary.json that cannot be read (a crash while it was written,
    an edit) is written anew with a warning: losing its history must not stop a
    resume.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = "warning: {}: {}; writing it anew"
        print(msg.format(path, e), file=sys.stderr)
        return {}
    return record if isinstance(record, dict) else {}


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML: --config <out_dir>/config.toml trains the same
    run again.
    """
    values = dataclasses.asdict(cfg) | {"resume": "none", "overwrite": False}
    # JSON numbers, strings, booleans and lists are valid TOML values; resume and
    # overwrite describe how a run started, not what it is, so they are reset.
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def git_state() -> dict | None:
    """The commit the code came from and whether it had uncommitted changes; None
    outside a git repository.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        # Only tracked files count: the untracked runs/ folder does not make the code
        # dirty.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def machine(device: torch.device, world: int) -> dict:
    """Where and how this process runs: each start of a run records one of these."""
    name = str(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    return {
        "start_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": name,
        "world_size": world,
        "git": git_state(),
    }


class RunFolder:
    """Writes config.toml and run.json at the start, and summary.json at each
    validation and at the end (rank 0 only).
    """

    def __init__(self, cfg: Config, out_dir: Path, device, world: int, resumed):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.start = out_dir, time.perf_counter()
        (out_dir / "config.toml").write_text(to_toml(cfg))
        facts = machine(device, world)
        path = out_dir / "run.json"
        record = {**GENERATED, **facts, "history": []}
        if resumed is not None and path.exists():
            # A resumed run keeps the first start's record and appends its own to
            # history.
            old = read_json(path)
            if isinstance(old.get("history"), list):
                record = old
            record["history"].append({"resumed_at": resumed, **facts})
        write_json(path, record)
        self.per_step = cfg.batch_size * cfg.grad_accum_steps * world
        self.best = self.last = None
        self.rates, self.wall = {}, 0.0
        old = out_dir / "summary.json"
        if resumed is not None and old.exists():
            # The time of the earlier starts counts towards the run's wall time.
            self.wall = read_json(old).get("wall_time", 0.0)

    def event(self, event: dict) -> None:
        """Track the best and last validation metrics and the logged throughput."""
        if event["split"] == "train":
            for key in ("samples_per_s", "tokens_per_s"):
                if key in event:
                    self.rates.setdefault(key, []).append(event[key])
            return
        self.last = {k: v for k, v in event.items() if k not in ("split", "epoch")}
        if self.best is None or self.last["loss"] < self.best["loss"]:
            self.best = self.last

    def write(self, step: int, status: str = "running") -> None:
        """Write summary.json: progress, wall time, mean throughput and the best and
        last validation metrics with their steps.
        """
        summary = {
            "status": status,
            "step": step,
            "samples": step * self.per_step,
            "wall_time": self.wall + time.perf_counter() - self.start,
            "best": self.best,
            "last": self.last,
        }
        for key, rates in self.rates.items():
            summary[f"mean_{key}"] = sum(rates) / len(rates)
        write_json(self.out_dir / "summary.json", summary)
