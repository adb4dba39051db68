"""训练：python -m char_gpt_zh.train [--config FILE.toml] [--字段 值 ...]"""

import dataclasses
import math
import random
import signal
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from char_gpt_zh.checkpoint import (
    CheckpointError,
    Progress,
    capture,
    load_checkpoint,
    load_model_state,
    restore,
    resume_from,
    save_checkpoint,
    weights_of,
)
from char_gpt_zh.config import Config, ConfigError, load_config
from char_gpt_zh.data import DataError, build_datasets, loaders, micro_batches
from char_gpt_zh.metrics import MetricsLog, Telemetry
from char_gpt_zh.model import EMA, build_model
from char_gpt_zh.optim import build_scheduler, configure_optimizer
from char_gpt_zh.run import RunFolder


def pick_device(name: str) -> torch.device:
    """选择训练设备；指定了不存在的设备属于配置错误，只报一行，不抛出回溯。"""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.type == "cuda" and (device.index or 0) >= count:
        msg = "--device {}：这台机器只有 {} 块 CUDA GPU；请用 auto 或 cpu"
        raise ConfigError(msg.format(name, count))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps：这里没有 MPS；请用 auto 或 cpu")
    return device


def to_device(batch: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """把一个批次拷到设备上，不等待：从锁页内存出发，拷贝与计算可以重叠。"""
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def loss_fn(cfg: Config, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.flatten(0, 1), target.flatten())


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg, device) -> dict:
    """整个验证集上的平均损失。"""
    model.eval()
    # 损失×样本数、样本数、正确数：都在设备上求和，最后只读一次，而不是每个批次读一次。
    sums = torch.zeros(3, device=device)
    for batch in loader:
        x, y = to_device(batch, device)
        output = model(x)
        sums[0] += loss_fn(cfg, output, y) * len(y)
        sums[1] += len(y)
    model.train()
    total, n, correct = sums.tolist()
    return {"loss": total / n}


def check_flags(nonfinite_at: torch.Tensor) -> None:
    """在事件时检查：如果自上次事件以来出现过 inf 或 nan 损失，就用一行信息停止训练。"""
    bad = nonfinite_at.item()  # 两次事件之间唯一的主机读取
    if bad:
        msg = "损失在第 {} 步变成了 inf 或 nan；已在写入检查点之前停止"
        raise FloatingPointError(msg.format(bad))


class GracefulStop:
    """Ctrl-C（SIGINT）或 SIGTERM 只设置一个标志；训练循环完成当前这一步、
    保存检查点后再退出。
    集群抢占作业时先发送 SIGTERM，稍后才强制杀死。在步与步之间停下，
    保证最后的检查点总是一致的，--resume auto 可以从那里精确地继续。
    """

    def __enter__(self):
        self.signum = None
        self.previous = {
            s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def handler(self, signum, frame) -> None:
        self.signum = signum

    def exit(self, step: int) -> None:
        stopped = "已在第 {step} 步停止；用 --resume auto 接着训练"
        print(stopped.format(step=step), file=sys.stderr)
        # 退出码为 128 + 信号编号：SIGINT 为 130，SIGTERM 为 143，与 shell 的约定一致。
        raise SystemExit(128 + self.signum)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train_step(model, optimizer, batches, progress, cfg, device) -> tuple:
    """一个优化器步：对 grad_accum_steps 个微批次做前向和反向传播，然后裁剪、更新。
    这里没有任何从设备读取的操作。
    """
    loss_sum = torch.zeros((), device=device)
    # 梯度累积：梯度在 grad_accum_steps 个微批次上累积，用同样的显存得到更大的批次。
    # 每个微批次的损失都除以微批次数，所以累积后的梯度等于一个大批次平均损失的梯度。
    for _ in range(cfg.grad_accum_steps):
        progress.epoch, progress.consumed, batch = next(batches)
        x, y = to_device(batch, device)
        loss = loss_fn(cfg, model(x), y) / cfg.grad_accum_steps
        loss.backward()
        loss_sum += loss.detach()
    # 裁剪前的梯度总范数，留在设备上；max_norm=inf 时只计算范数，不做裁剪。
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
    # found_inf 为 1 时，融合优化器在设备上跳过这次更新
    # GradScaler 正是这样在不读取主机的情况下跳过 fp16 步的：
    # 非有限的梯度永远不会进入权重。
    optimizer.found_inf = grad_norm.isfinite().logical_not().float()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def build(cfg: Config, device: torch.device, rank: int, world: int) -> tuple:
    """数据、模型和优化器；`parts` 按检查点中的键名收纳所有带 state_dict 的部件。
    先设置随机种子，所以初始权重只取决于种子。EMA 副本在编译和 DDP 包装之前创建，
    它的键名因此与普通模型一致。
    """
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data = build_datasets(cfg)
    # 输入尺寸、类别数或词表由数据决定。
    cfg = dataclasses.replace(cfg, **data.sizes)
    model = build_model(cfg).to(device)
    if cfg.init_from:
        weights = weights_of(load_checkpoint(cfg.init_from), cfg.init_from)
        load_model_state(model, weights)
    # 精确续训所需的、带 state_dict 的全部部件，以及它们在检查点中的键名。
    parts = {"model": model}
    # 权重（及缓冲区）的指数滑动平均，与原始模型一起评估。
    # 在最近约 1/(1 - decay) 步上取平均，可以平滑最后几步随机梯度下降的噪声；
    # 平均后的模型往往比最后一步的权重泛化得更好。
    # https://pytorch.org/docs/stable/optim.html#weight-averaging-swa-and-ema
    parts["ema"] = EMA(model, cfg.ema_decay)
    parts["optimizer"] = configure_optimizer(model, cfg, device)
    return cfg, data, model, parts


def train(cfg: Config) -> dict:
    """按 cfg 训练；返回最后一次验证的指标。"""
    rank, world, device = 0, 1, pick_device(cfg.device)
    if device.type == "cuda":
        # fp32 矩阵乘法使用 TF32 张量核心：在 A100 或 H100 上约为 fp32 的 8 倍速度，
        # 尾数保留 10 位。
        # https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices
        torch.set_float32_matmul_precision("high")
    cfg, data, model, parts = build(cfg, device, rank, world)
    optimizer = parts["optimizer"]
    ema = parts["ema"]
    out_dir = Path(cfg.out_dir)
    ckpt = resume_from(cfg, out_dir)
    loader, val_loader = loaders(data, cfg, device, rank, world)
    total_steps = cfg.max_steps or cfg.epochs * loader.batch_sampler.steps_per_epoch
    scheduler = parts["scheduler"] = build_scheduler(optimizer, cfg, total_steps)
    progress = restore(ckpt, parts) if ckpt else Progress()
    first, resumed = progress.step, progress.step if ckpt else None
    run = RunFolder(cfg, out_dir, device, world, resumed) if rank == 0 else None
    log = MetricsLog(out_dir / "metrics.jsonl", resumed, total_steps, run)
    dtype = torch.float32
    telemetry = Telemetry(cfg, model, device, dtype, world, first)
    batches = micro_batches(loader, progress.epoch, progress.consumed)
    # 这些计数器放在设备上：读取它们会让 GPU 停顿，所以只在事件时读取。
    skipped = torch.tensor(float(progress.skipped), device=device)
    nonfinite_at = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = grad_norm = torch.zeros((), device=device)
    lr = optimizer.param_groups[0]["lr"]
    metrics = {}
    with GracefulStop() as stop:
        while True:
            step = progress.step
            # 记录日志、评估和保存都在事件时进行；事件之间的各步从不从设备读取数据。
            # 调用 .item()、float(t)、bool(t) 或 print(t) 时，CPU 必须等 GPU
            # 完成所有排队的工作，在此期间无法排入下一步。
            # 续训那一步的事件在写检查点之前已经执行过了。
            due, end = step > first or step == 0, step >= total_steps
            log_now = due and step > 0 and step % cfg.log_every == 0
            eval_now = due and (step % cfg.eval_every == 0 or end)
            save_now = due and step > 0 and (step % cfg.save_every == 0 or end)
            stopping = stop.signum is not None
            if log_now or eval_now or save_now or stopping:
                check_flags(nonfinite_at)
                progress.skipped = int(skipped.item())
            if log_now:
                loss, norm = torch.stack([loss_sum, grad_norm]).tolist()
                values = dict(loss=loss, grad_norm=norm, skipped=progress.skipped)
                timing = telemetry.measure(step)
                log.write("train", step, progress.epoch, lr=lr, **values, **timing)
            if eval_now:
                metrics = evaluate(model, val_loader, cfg, device)
                averaged = evaluate(ema.module, val_loader, cfg, device)
                metrics.update({f"ema_{k}": v for k, v in averaged.items()})
                lr_now = optimizer.param_groups[0]["lr"]
                log.write("val", step, progress.epoch, lr=lr_now, **metrics)
                # 按 predict 和 sample 将要使用的那组权重的损失来挑选 best.pt
                score = metrics["ema_loss"]
                if score < progress.best_val_loss:
                    progress.best_val_loss = score
                    state = capture(parts, progress, cfg, data)
                    save_checkpoint(out_dir / "checkpoints/best.pt", state)
            if save_now or stopping:
                state = capture(parts, progress, cfg, data)
                last = out_dir / "checkpoints/last.pt"
                save_checkpoint(last, state, keep_previous=True)
            if stopping:
                log.close(step)
                stop.exit(step)
            if eval_now or save_now:
                # 吞吐量只统计训练步，不含评估和保存的时间。
                telemetry.restart(step)
            if end:  # 到达或越过终点：用更小的 --max-steps 恢复时也在此停止。
                break
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, grad_norm = train_step(
                model, optimizer, batches, progress, cfg, device
            )
            # 在设备上记下损失第一次变为 inf 或 nan 的步数，不需要同步。
            first_bad = ~loss_sum.isfinite() & (nonfinite_at == 0)
            nonfinite_at.masked_fill_(first_bad, step + 1)
            # 在设备上统计被跳过更新的步数
            skipped += grad_norm.isfinite().logical_not()
            scheduler.step()
            ema.update_parameters(model)
            progress.step += 1
            log.step()
    log.close(step)
    return metrics


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(argv)
    try:
        metrics = train(cfg)
    except ConfigError as e:
        msg = "错误：{}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(2)
    except (DataError, CheckpointError, FloatingPointError) as e:
        msg = "错误：{}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    msg = (
        "没有要训练的步数：这次训练已到达最后一步；要继续，"
        "请增大 --max-steps 或 --epochs"
    )
    print(" ".join(f"val_{k}={v:.4f}" for k, v in metrics.items()) or msg)


if __name__ == "__main__":
    main()
