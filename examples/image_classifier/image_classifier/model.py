"""The model; build_model(Config()) returns a ready nn.Module."""

from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from image_classifier.config import Config


class KeepBatchNormStats:
    """Recomputation must not update BatchNorm's running statistics a second time:
    restore them after it.
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self):
        self.saved = [b.clone() for b in self.module.buffers()]

    def __exit__(self, *exc):
        for buffer, saved in zip(self.module.buffers(), self.saved, strict=True):
            buffer.copy_(saved)


class CNN(nn.Module):
    """Conv stages (conv, batch norm, ReLU, 2x2 max-pool), then global average
    pooling and a linear head.
    """

    def __init__(
        self,
        in_channels: int,
        channels: list[int],
        output_dim: int,
        dropout: float,
        batch_norm: bool,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        stages = []
        for width in channels:
            stages.append(
                nn.Sequential(
                    # BatchNorm subtracts the mean right after, so a conv bias would be
                    # wasted.
                    nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm),
                    nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        # Adaptive pooling makes the head independent of the input size: no hard-coded
        # 64 * 8 * 8.
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels, output_dim),
        )
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            if self.grad_checkpointing and self.training:
                # Keep only the block's input; recompute its activations during
                # backward.
                x = checkpoint(
                    stage,
                    x,
                    use_reentrant=False,
                    context_fn=lambda stage=stage: (
                        nullcontext(),
                        KeepBatchNormStats(stage),
                    ),
                )
            else:
                x = stage(x)
        return self.head(x)


def build_model(cfg: Config) -> nn.Module:
    output_dim = cfg.num_classes
    return CNN(
        cfg.in_channels,
        cfg.channels,
        output_dim,
        cfg.dropout,
        cfg.batch_norm,
        cfg.grad_checkpointing,
    )
