"""metrics.jsonl、TensorBoard、进度显示和遥测：每步时间、吞吐量、显存和 MFU。"""

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from char_gpt_zh.config import Config

# 这些是测量值而非计算值，每次运行都不同；事件中的其他字段都是精确可复现的。
TIMING = ("step_time", "samples_per_s", "tokens_per_s", "mfu", "max_memory")


class MetricsLog:
    """每行一个 JSON 对象。恢复训练时先删去检查点步数之后的记录，
    保证每一步只出现一次。
    """

    def __init__(self, path: Path, resume_step: int | None, total_steps: int, run):
        self.path, self.run, self.total = path, run, total_steps
        self.enabled = run is not None  # 只有 rank 0 写入
        if not self.enabled:
            return
        kept = []
        if resume_step is not None and path.exists():
            kept = [e for e in read_events(path) if e["step"] <= resume_step]
        path.write_text("".join(json.dumps(e) + "\n" for e in kept))
        # 续训时，摘要从保留下来的事件重新算起，这样最佳值和最新值与 metrics.jsonl
        # 一致。
        for event in kept:
            run.event(event)
        # 在终端上显示进度条；否则每个事件输出一行，便于批处理作业的日志查看。
        self.lines = not sys.stderr.isatty()
        self.bar = tqdm(
            total=total_steps,
            initial=resume_step or 0,
            desc="训练",
            disable=self.lines,
        )

    def step(self) -> None:
        if self.enabled:
            self.bar.update()

    def write(self, split: str, step: int, epoch: int, **values) -> None:
        if not self.enabled:
            return
        event = {"step": step, "epoch": epoch, "split": split, **values}
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")
        self.run.event(event)
        if split == "val":
            self.run.write(step)
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        if self.lines:
            line = "{split} 第 {step} 步：{values}"
            print(line.format(split=split, step=step, values=text), file=sys.stderr)
        elif split == "train":
            self.bar.set_postfix_str(text)

    def close(self, step: int) -> None:
        if self.enabled:
            self.bar.close()
            self.run.write(step, "finished" if step >= self.total else "stopped")


def read_events(path: Path) -> list[dict]:
    """读取 metrics.jsonl 中的事件；崩溃时被截断或以其他方式损坏的行会被丢弃，
    并给出提示。
    """
    events = []
    # 不是 UTF-8 的字节只会损坏它所在的那一行。
    text = path.read_bytes().decode(errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if is_event(event):
            events.append(event)
        else:
            note = "提示：{path}:{line} 这一行不完整或已损坏，已丢弃"
            print(note.format(path=path, line=number), file=sys.stderr)
    return events


def is_event(event: object) -> bool:
    """可以接着使用的一行：带整数 step 的 JSON 对象，验证事件还要有 loss。
    崩溃会让最后一行写到一半；磁盘错误或手动编辑可能损坏任何一行。
    """
    if not isinstance(event, dict) or type(event.get("step")) is not int:
        return False
    split, loss = event.get("split"), event.get("loss")
    return split == "train" or split == "val" and isinstance(loss, (int, float))


# 每块 GPU 的稠密峰值 FLOP/s：（bf16 或 fp16，TF32），数据来自厂商的规格表。
PEAK_FLOPS = {
    "B200": (2250e12, 1100e12),
    "H200": (989e12, 495e12),
    "H100 PCIe": (756e12, 378e12),
    "H100": (989e12, 495e12),
    "A100": (312e12, 156e12),
    "L40S": (362e12, 183e12),
    "L4": (121e12, 60e12),
    "V100": (125e12, 15.7e12),
    "MI300X": (1307e12, 654e12),
}


def flops_per_sample(model: nn.Module, cfg: Config) -> float:
    """每个样本的训练 FLOPs：每次使用一个权重计 6 次（前向 2 次，反向 4 次）。"""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    # 每个词元 6N，再加上注意力的 12 × 层数 × d_model × seq_len（PaLM 论文附录 B）。
    # https://arxiv.org/abs/2204.02311
    attention = 12 * cfg.n_layers * cfg.d_model * cfg.seq_len
    return cfg.seq_len * (6 * n + attention)


class Telemetry:
    """每个优化器步的时间、每秒样本数（和词元数）、显存峰值和模型 FLOPs 利用率。"""

    def __init__(
        self, cfg: Config, model: nn.Module, device, dtype, world: int, step: int
    ):
        self.samples = cfg.batch_size * cfg.grad_accum_steps * world
        self.tokens = self.samples * cfg.seq_len
        self.cuda, self.world = device.type == "cuda", world
        self.peak = None
        if self.cuda:
            name = torch.cuda.get_device_name(device)
            found = [v for k, v in PEAK_FLOPS.items() if k in name]
            low_precision = dtype in (torch.bfloat16, torch.float16)
            self.peak = found[0][0 if low_precision else 1] if found else None
        self.flops = flops_per_sample(model, cfg)
        self.restart(step)

    def restart(self, step: int) -> None:
        """从这一步开始一个新的测量窗口。"""
        self.time, self.step = time.perf_counter(), step

    def measure(self, step: int) -> dict:
        """自上次测量以来的平均值；应在一次主机读取之后立即调用，那时设备已经跟上。"""
        now = time.perf_counter()
        step_time = (now - self.time) / max(1, step - self.step)
        self.restart(step)
        out = {"step_time": step_time, "samples_per_s": self.samples / step_time}
        out["tokens_per_s"] = self.tokens / step_time
        if self.cuda:
            out["max_memory"] = torch.cuda.max_memory_allocated()
        if self.peak:
            # 模型 FLOPs 利用率：实际达到的 FLOP/s 与 GPU 峰值之比
            out["mfu"] = self.flops * out["samples_per_s"] / (self.peak * self.world)
        return out
