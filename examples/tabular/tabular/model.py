"""The model; build_model(Config()) returns a ready nn.Module."""

import torch
from torch import nn

from tabular.config import Config


class MLP(nn.Module):
    """Linear, ReLU and dropout for each hidden layer, then a linear head."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        output_dim: int,
        dropout: float,
    ):
        super().__init__()
        blocks = []
        for width in hidden_dims:
            blocks.append(
                nn.Sequential(
                    nn.Linear(input_dim, width), nn.ReLU(), nn.Dropout(dropout)
                )
            )
            input_dim = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_model(cfg: Config) -> nn.Module:
    output_dim = cfg.num_classes
    return MLP(cfg.input_dim, cfg.hidden_dims, output_dim, cfg.dropout)
