"""训练：python -m char_gpt_zh.train [--config FILE.toml] [--字段 值 ...]"""

import dataclasses
import itertools
import json
import math
import random
import signal
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from char_gpt_zh.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from char_gpt_zh.config import Config, ConfigError, load_config
from char_gpt_zh.data import DataError, build_datasets
from char_gpt_zh.model import build_model


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_optimizer(model: nn.Module, cfg: Config, device: torch.device):
    # 权重衰减只作用于权重矩阵，不作用于偏置和归一化层的增益。
    # 权重衰减把参数拉向零。对偏置或 LayerNorm 的增益来说，零并不代表更简单的模型，只会
    # 更差，所以 GPT-2 和大多数现代做法都不对一维参数做衰减。
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for p in params if p.dim() >= 2],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # 融合（fused）优化器内核一次遍历更新所有参数（CPU 和 CUDA 均支持）。
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """学习率调度；它的总长度按优化器步数计算。
    按优化器步数而不是 epoch 计数，无论训练长度由 max_steps 还是 epochs 决定、
    grad_accum_steps 取多少，调度曲线的形状都保持一致。
    https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate
    """
    warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else max(1, total_steps // 20)
    cosine = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup), eta_min=cfg.min_lr
    )
    if warmup == 0:
        # SequentialLR 的里程碑为 0 时有已知 bug；没有预热时，整个调度就是余弦退火。
        return cosine
    # 从 lr / 1000 线性预热（LinearLR 的起始系数必须大于 0）。
    # 训练最初几步中 Adam 的二阶矩估计还不准确；先用较小的学习率，可以避免这几步把权重推
    # 得太远。
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def loss_fn(cfg: Config, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.flatten(0, 1), target.flatten())


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, cfg: Config, device: torch.device
) -> dict:
    """整个验证集上的平均损失。"""
    model.eval()
    total, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        output = model(x)
        total += loss_fn(cfg, output, y).item() * len(y)
        n += len(y)
    model.train()
    return {"loss": total / n}


def micro_batches(
    loader: DataLoader, shuffle: torch.Generator, cfg: Config, epoch: int, start: int
):
    """无限地产生 (epoch, index, batch)，从第 epoch 轮的第 start 个批次开始。
    每一轮的打乱顺序只取决于 (seed, epoch)。因此恢复的训练会重放同样的顺序，并跳过
    已经用过的批次——这正是在一轮中途恢复也能做到精确的原因。
    """
    while True:
        shuffle.manual_seed(cfg.seed + epoch)
        for i, batch in enumerate(itertools.islice(loader, start, None), start):
            yield epoch, i, batch
        epoch, start = epoch + 1, 0


class GracefulStop:
    """Ctrl-C（SIGINT）或 SIGTERM 只设置一个标志；训练循环完成当前这一步、保存检查点
    后再退出。
    集群抢占作业时先发送 SIGTERM，稍后才强制杀死。在步与步之间停下，保证最后的检查
    点总是一致的，--resume auto 可以从那里精确地继续。
    """

    def __enter__(self):
        self.signum = None
        self.previous = {
            s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def handler(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class MetricsLog:
    """每行一个 JSON 对象。恢复训练时先删去检查点步数之后的记录，保证每一步只出现一次。"""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.exists():
            lines = path.read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, **event) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")


def train(cfg: Config) -> dict:
    """按 cfg 训练；返回最后一次验证的指标。"""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = pick_device(cfg.device)
    data = build_datasets(cfg)
    # 输入尺寸、类别数或词表由数据决定。
    cfg = dataclasses.replace(cfg, **data.sizes)
    model = build_model(cfg).to(device)
    if cfg.init_from:
        load_model_state(model, load_checkpoint(cfg.init_from)["model"])
    # 权重（及缓冲区）的指数滑动平均，与原始模型一起评估。
    # 在最近约 1/(1 - decay) 步上取平均，可以平滑最后几步随机梯度下降的噪声；平均后的模
    # 型往往比最后一步的权重泛化得更好。
    # https://pytorch.org/docs/stable/optim.html#weight-averaging-swa-and-ema
    ema = AveragedModel(
        model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
    )
    optimizer = configure_optimizer(model, cfg, device)

    shuffle = torch.Generator()
    train_loader = DataLoader(
        data.train,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        generator=shuffle,
    )
    val_loader = DataLoader(data.val, batch_size=cfg.batch_size)
    steps_per_epoch = len(train_loader) // cfg.grad_accum_steps
    total_steps = cfg.max_steps or cfg.epochs * max(1, steps_per_epoch)
    scheduler = build_scheduler(optimizer, cfg, total_steps)

    out_dir = Path(cfg.out_dir)
    last_path = out_dir / "checkpoints/last.pt"
    best_path = out_dir / "checkpoints/best.pt"
    step, epoch, start, best = 0, 0, 0, math.inf
    if cfg.resume == "none":
        ckpt = None
    elif cfg.resume == "auto":
        ckpt = latest_checkpoint(last_path)
    else:
        ckpt = load_checkpoint(cfg.resume)
    if ckpt is not None:
        # 决定下一步的一切：权重、优化器的矩估计、学习率调度、数据位置、随机数状态。
        load_model_state(model, ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        ema.load_state_dict(ckpt["ema"])
        step, epoch, start = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        best = ckpt["best_val_loss"]
        set_rng_state(ckpt["rng"])
        print(
            f"resumed from step {step} (epoch {epoch}, batch {start})", file=sys.stderr
        )
    log = MetricsLog(out_dir / "metrics.jsonl", resume_step=step if ckpt else None)

    def checkpoint() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch": start,
            "best_val_loss": best,
            "rng": rng_state(),
            "config": dataclasses.asdict(cfg),
            "data": data.meta,
        }

    def validate() -> dict:
        nonlocal best
        metrics = evaluate(model, val_loader, cfg, device)
        averaged = evaluate(ema.module, val_loader, cfg, device)
        metrics.update({f"ema_{k}": v for k, v in averaged.items()})
        log.write(
            step=step,
            epoch=epoch,
            split="val",
            lr=optimizer.param_groups[0]["lr"],
            **metrics,
        )
        if metrics["loss"] < best:
            best = metrics["loss"]
            save_checkpoint(best_path, checkpoint())
        return metrics

    metrics = validate() if step == 0 else {}
    model.train()
    batches = micro_batches(train_loader, shuffle, cfg, epoch, start)
    progress = tqdm(total=total_steps, initial=step, disable=None, desc="train")
    with GracefulStop() as stop:
        while step < total_steps:
            lr = optimizer.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=device)
            # 梯度在 grad_accum_steps 个微批次上累加：用同样的显存得到更大的批量。
            # 每个微批次的损失都除以微批次数，所以累加后的梯度等于一个大批次平均损失的梯
            # 度。
            for _ in range(cfg.grad_accum_steps):
                epoch, i, (x, y) = next(batches)
                x, y = x.to(device), y.to(device)
                loss = loss_fn(cfg, model(x), y) / cfg.grad_accum_steps
                loss.backward()
                loss_sum += loss.detach()
            # 一旦损失出现 NaN 或 inf 就立即停止，不让它影响权重或写进检查点。
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(
                    f"the loss is {loss_sum.item()} at step {step + 1}"
                )
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            optimizer.zero_grad(set_to_none=True)
            step, start = step + 1, i + 1
            progress.update()
            if step % cfg.log_every == 0:
                log.write(
                    step=step, epoch=epoch, split="train", lr=lr, loss=loss_sum.item()
                )
                progress.set_postfix(loss=f"{loss_sum.item():.4f}")
            if step % cfg.eval_every == 0 or step == total_steps:
                metrics = validate()
            stopping = stop.signum is not None
            if step % cfg.save_every == 0 or step == total_steps or stopping:
                save_checkpoint(last_path, checkpoint(), keep_previous=True)
            if stopping:
                progress.close()
                print(
                    f"stopped at step {step}; continue with --resume auto",
                    file=sys.stderr,
                )
                # 退出码为 128 + 信号编号：SIGINT 为 130，SIGTERM 为 143，与 shell 的约
                # 定一致。
                raise SystemExit(128 + stop.signum)
    progress.close()
    return metrics


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(argv)
    try:
        metrics = train(cfg)
    except (ConfigError, DataError, CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(" ".join(f"val_{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
