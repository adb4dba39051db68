"""模型；build_model(Config()) 返回一个可直接使用的 nn.Module。"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from char_gpt_zh.config import Config


class CausalSelfAttention(nn.Module):
    """多头自注意力（Vaswani 等，2017）。"""

    def __init__(self, d_model: int, n_heads: int, attn_dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, "d_model 必须能被 n_heads 整除"
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        # 用一次矩阵乘法同时算出查询、键和值：比三次更快。
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
            for t in (q, k, v)
        )
        dropout_p = self.attn_dropout if self.training else 0.0
        # is_causal=True：每个位置只关注自身和之前的位置，无需构造掩码。
        # https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    """前置归一化的 Transformer 块：x + attn(ln(x))，然后 x + mlp(ln(x))。"""

    def __init__(self, cfg: Config):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.attn_dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            nn.GELU(),
            nn.Linear(cfg.d_ff, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-2 风格的仅解码器语言模型（Radford 等，2019）。"""

    def __init__(self, cfg: Config):
        super().__init__()
        self.seq_len = cfg.seq_len
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # 权重共享：输出层与词元嵌入共用同一权重（Press & Wolf，2017）。
        self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # 与 GPT-2 一样，把残差投影的初始化缩放 1/sqrt(2 * n_layers)，
        # 避免残差流随深度增大。
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) 词元 id -> 下一个词元的 logits (B, T, vocab_size)。"""
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
    ) -> torch.Tensor:
        """把 idx (B, T) 延长 max_new_tokens 个词元，
        每个新词元都从模型的预测分布中采样。
        """
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.seq_len :])[:, -1, :] / temperature
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


class EMA(AveragedModel):
    """权重的指数移动平均（EMA）：每一步之后，avg += (1 - decay) * (weights - avg)。
    torch 自带的 AveragedModel 每次更新都要把 n_averaged 读回主机两次，会让 GPU
    每一步都停顿；这里的实现把判断留在设备上。state_dict 与 AveragedModel 相同：
    权重放在 'module.' 之下，另有 n_averaged。
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, use_buffers=True)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        # 第一次更新直接复制权重（权重系数为 1）；之后每次向当前权重移动 (1 - decay)
        # 的比例。
        weight = torch.where(self.n_averaged == 0, 1.0, 1.0 - self.decay)
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [*model.parameters(), *model.buffers()]
        for avg, new in zip(averaged, current, strict=True):
            if avg.is_floating_point():
                avg.lerp_(new.detach(), weight)
            else:
                avg.copy_(new)
        self.n_averaged += 1


def build_model(cfg: Config) -> nn.Module:
    return GPT(cfg)
