"""优化器和学习率调度。"""

import torch
from torch import nn
from torch.optim import lr_scheduler

from char_gpt_zh.config import Config


def configure_optimizer(model: nn.Module, cfg: Config, device: torch.device):
    # 权重衰减只作用于权重矩阵，不作用于偏置和归一化层的缩放参数（γ）。
    # 权重衰减把参数拉向零。对偏置或 LayerNorm 的缩放参数来说，零并不代表更简单的模型，
    # 只会更差，所以 GPT-2 和大多数现代做法都不对一维参数做衰减。
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for p in params if p.dim() >= 2],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # 融合（fused）优化器算子一次遍历更新所有参数（CPU 和 CUDA 均支持）。
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """学习率调度；它的总长度按优化器步数计算。
    按优化器步数而不是轮数（epoch）计数，无论训练长度由 max_steps 还是 epochs
    决定、grad_accum_steps 取多少，调度曲线的形状都保持一致。
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
    # 训练最初几步中 Adam 的二阶矩估计还不准确；先用较小的学习率，
    # 可以避免这几步把权重推得太远。
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
