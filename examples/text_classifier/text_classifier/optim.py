"""The optimizer and the learning-rate schedule."""

import torch
from torch import nn
from torch.optim import lr_scheduler

from text_classifier.config import Config


def configure_optimizer(model: nn.Module, cfg: Config, device: torch.device):
    # Weight decay on weight matrices only, not on biases or norm gains.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for p in params if p.dim() >= 2],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused optimizer kernel updates all parameters in one pass (CPU and CUDA).
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """The learning-rate schedule; its horizon is counted in optimizer steps."""
    warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else max(1, total_steps // 20)
    cosine = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup), eta_min=cfg.min_lr
    )
    if warmup == 0:
        # SequentialLR with a milestone at 0 is buggy; with no warm-up, cosine is the
        # whole schedule.
        return cosine
    # Warm up linearly from lr / 1000 (LinearLR needs a start factor above 0).
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
