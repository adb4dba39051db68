"""运行目录自带说明：config.toml 可以复现这次运行，run.json 记录在哪里、用什么跑的，
summary.json 记录结果。
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

from char_gpt_zh.config import Config

# 这个项目是怎样生成的，写进每个 run.json。
GENERATED = {
    "dlgen": "0.1.0",
    "options": {
        "model": "gpt",
        "task": "classification",
        "optimizer": "adamw",
        "scheduler": "warmup-cosine",
        "attention": "sdpa",
        "amp": False,
        "grad_checkpointing": False,
        "compile": False,
        "ema": True,
        "tensorboard": False,
        "tracker": "none",
        "sweep": False,
        "ddp": False,
        "fsdp": False,
        "tooling": False,
    },
}
ROOT = Path(__file__).resolve().parent.parent


def write_json(path: Path, data: dict) -> None:
    """先写到目标旁边，再改名：读取者（比如对正在运行的任务生成报告）
    永远不会读到半个文件。
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """run.json 或 summary.json 读不出来时（写到一半时崩溃，或被手工改坏），
    给出一条警告后重新写：丢了历史记录不该让续训停下来。
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = "警告：{}：{}；重新写一份"
        print(msg.format(path, e), file=sys.stderr)
        return {}
    return record if isinstance(record, dict) else {}


def to_toml(cfg: Config) -> str:
    """以 TOML 写出解析后的完整配置：--config <out_dir>/config.toml
    会再训练出同样的结果。
    """
    values = dataclasses.asdict(cfg) | {"resume": "none", "overwrite": False}
    # JSON 的数字、字符串、布尔值和列表都是合法的 TOML 值；resume 和 overwrite
    # 说的是这次运行如何启动，而不是运行本身，所以重置为默认值。
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def git_state() -> dict | None:
    """代码来自哪个提交，以及是否有未提交的修改；不在 git 仓库里时为 None。"""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        # 只看已跟踪的文件：未跟踪的 runs/ 目录不算代码被改动。
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
    """这个进程在哪里、以什么方式运行：每次启动都记录一份。"""
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
    """开始时写 config.toml 和 run.json，每次验证和结束时更新 summary.json（只由 rank
    0 写）。
    """

    def __init__(self, cfg: Config, out_dir: Path, device, world: int, resumed):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.start = out_dir, time.perf_counter()
        (out_dir / "config.toml").write_text(to_toml(cfg))
        facts = machine(device, world)
        path = out_dir / "run.json"
        record = {**GENERATED, **facts, "history": []}
        if resumed is not None and path.exists():
            # 续训的运行保留第一次启动的记录，把自己的记录追加到 history 中。
            old = read_json(path)
            if isinstance(old.get("history"), list):
                record = old
            record["history"].append({"resumed_at": resumed, **facts})
        write_json(path, record)
        self.per_step = cfg.batch_size * cfg.grad_accum_steps * world
        self.tokens_per_step = self.per_step * cfg.seq_len
        self.best = self.last = None
        self.rates, self.wall = {}, 0.0
        old = out_dir / "summary.json"
        if resumed is not None and old.exists():
            # 之前几次启动花的时间也计入这次运行的总耗时。
            self.wall = read_json(old).get("wall_time", 0.0)

    def event(self, event: dict) -> None:
        """记录最佳和最新的验证指标，以及日志里的吞吐量。"""
        if event["split"] == "train":
            for key in ("samples_per_s", "tokens_per_s"):
                if key in event:
                    self.rates.setdefault(key, []).append(event[key])
            return
        self.last = {k: v for k, v in event.items() if k not in ("split", "epoch")}
        if self.best is None or self.last["loss"] < self.best["loss"]:
            self.best = self.last

    def write(self, step: int, status: str = "running") -> None:
        """写出 summary.json：进度、总耗时、平均吞吐量，
        以及最佳和最新的验证指标和对应的步数。
        """
        summary = {
            "status": status,
            "step": step,
            "samples": step * self.per_step,
            "tokens": step * self.tokens_per_step,
            "wall_time": self.wall + time.perf_counter() - self.start,
            "best": self.best,
            "last": self.last,
        }
        for key, rates in self.rates.items():
            summary[f"mean_{key}"] = sum(rates) / len(rates)
        write_json(self.out_dir / "summary.json", summary)
