"""The model; build_model(Config()) returns a ready nn.Module."""

import torch
import torch.nn.functional as F
from torch import nn

from text_classifier.config import Config
from text_classifier.data import PAD


class SelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al., 2017)."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        # One matrix multiply for queries, keys and values: faster than three.
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # mask: bool, True where a query may attend to a key, broadcast to (B, heads, T,
        # T).
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
            for t in (q, k, v)
        )
        dropout_p = self.attn_dropout if self.training else 0.0
        # The fused kernel computes softmax(QK^T / sqrt(d)) V without materializing the
        # T x T weights.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class EncoderLayer(nn.Module):
    """Attention and feed-forward sublayers, each with a residual connection and
    LayerNorm.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attn_dropout: float,
        norm_first: bool,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(d_model, n_heads, attn_dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff),
            nn.GELU(),
            nn.Linear(d_ff, d_model),
        )
        # Dropout on each sublayer's output before the residual sum, as in the paper
        # (section 5.4); none inside the feed-forward, whose wide hidden layer would
        # make it the costliest dropout.
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.norm_first:
            # Pre-norm keeps the residual path an identity, which trains deep stacks
            # more stably.
            x = x + self.drop1(self.attn(self.norm1(x), mask))
            return x + self.drop2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x, mask)))
        return self.norm2(x + self.drop2(self.ff(x)))


class TransformerClassifier(nn.Module):
    """Token and position embeddings, encoder layers, masked mean pooling, linear
    head.
    """

    def __init__(self, cfg: Config, output_dim: int):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.d_model,
                cfg.n_heads,
                cfg.d_ff,
                cfg.dropout,
                cfg.attn_dropout,
                cfg.norm_first,
            )
            for _ in range(cfg.n_layers)
        )
        # Pre-norm layers leave the last residual stream unnormalized, so normalize once
        # at the end.
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.head = nn.Linear(cfg.d_model, output_dim)

    def forward(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens (B, T) -> logits (B, output_dim); padding_mask is True at padding."""
        if padding_mask is None:
            padding_mask = tokens == PAD
        positions = torch.arange(tokens.size(1), device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(positions))
        # Padding may not be attended to: (B, T) padding -> (B, 1, 1, T) keys to attend.
        mask = ~padding_mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x)
        # Average over real tokens only, so the amount of padding does not change the
        # result.
        keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


def build_model(cfg: Config) -> nn.Module:
    return TransformerClassifier(cfg, output_dim=cfg.num_classes)
