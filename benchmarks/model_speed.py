"""Training-step speed of the generated transformer and gpt on this machine, side by side
with torch.nn.TransformerEncoder, the cheat sheet's hand-written layer, and the machine's
fp32 matmul rate. Run: python benchmarks/model_speed.py"""

import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scaffold.generate import generate
from scaffold.spec import build_spec


def step_time(model, make_batch, loss_fn, steps=5):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x, y = make_batch()
    for i in range(steps + 1):  # the first step warms up
        if i == 1:
            start = time.perf_counter()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


class CheatSheetLayer(nn.Module):
    """The cheat sheet's attention and encoder layer (section 5-6), masking aside."""

    def __init__(self, d, h, d_ff, p):
        super().__init__()
        self.h, self.hd = h, d // h
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(p)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(p), nn.Linear(d_ff, d))

    def attn(self, x):
        B = x.size(0)
        q, k, v = (
            w(x).view(B, -1, self.h, self.hd).transpose(1, 2)
            for w in (self.w_q, self.w_k, self.w_v)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
        out = self.drop(scores.softmax(-1)) @ v
        return self.w_o(out.transpose(1, 2).contiguous().view(B, -1, self.h * self.hd))

    def forward(self, x):
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.ff(x)))


def main():
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    for model in ("transformer", "gpt"):
        generate(build_spec(f"bench_{model}", model=model), tmp / f"bench_{model}")
        sys.path.insert(0, str(tmp / f"bench_{model}"))
    from bench_gpt.config import Config as GConfig
    from bench_gpt.model import build_model as build_gpt
    from bench_transformer.config import Config as TConfig
    from bench_transformer.model import build_model as build_tr

    ce = nn.functional.cross_entropy
    d, h, L, d_ff, T, B, V = 256, 4, 4, 1024, 256, 16, 64
    tokens = lambda: (torch.randint(2, V, (B, T)), torch.randint(4, (B,)))

    class Peer(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.emb, self.pos = nn.Embedding(V, d), nn.Embedding(T, d)
            self.enc = layer
            self.head = nn.Linear(d, 4)

        def forward(self, idx):
            x = self.emb(idx) + self.pos(torch.arange(idx.size(1)))
            return self.head(self.enc(x).mean(1))

    # At dropout 0.1 each layer drops where it always does: torch's and the cheat sheet's
    # also on the attention weights and inside the feed-forward, the generated one only on
    # sublayer outputs (attn_dropout 0 keeps SDPA fused). At 0 all three do the same work.
    layers = {}
    for p in (0.1, 0.0):
        cfg = TConfig(
            d_model=d, n_heads=h, n_layers=L, d_ff=d_ff, seq_len=T, vocab_size=V, dropout=p
        )
        torch_layer = nn.TransformerEncoderLayer(
            d, h, d_ff, p, activation="gelu", batch_first=True, norm_first=True
        )
        layers[p] = [
            step_time(build_tr(cfg), tokens, ce),
            step_time(
                Peer(nn.TransformerEncoder(torch_layer, L, enable_nested_tensor=False)),
                tokens,
                ce,
            ),
            step_time(
                Peer(nn.Sequential(*(CheatSheetLayer(d, h, d_ff, p) for _ in range(L)))),
                tokens,
                ce,
            ),
        ]

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    matmul = 5 * 2 * 2048**3 / (time.perf_counter() - start)

    gd, gh, gL, gT, gB = 384, 6, 6, 256, 8
    gcfg = GConfig(d_model=gd, n_heads=gh, n_layers=gL, d_ff=4 * gd, seq_len=gT, vocab_size=V)
    gpt = build_gpt(gcfg)
    t_gpt = step_time(
        gpt,
        lambda: (torch.randint(V, (gB, gT)),) * 2,
        lambda o, y: ce(o.flatten(0, 1), y.flatten()),
    )
    params = sum(p.numel() for p in gpt.parameters())
    # 6 x parameters x tokens, plus causal attention: 6 * L * T^2 * d per sequence (halved).
    flops = 6 * params * gB * gT + 6 * gL * gB * gT * gT * gd
    rate = flops / t_gpt

    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| measurement | value |\n|---|---|")
    for p, (t_ours, t_torch, t_sheet) in layers.items():
        size = f"d256 h4 L4 ff1024 T256 B16, dropout {p}"
        print(f"| transformer step, generated ({size}) | {t_ours * 1000:.0f} ms |")
        print(
            f"| same with nn.TransformerEncoder | {t_torch * 1000:.0f} ms "
            f"(generated/torch = {t_ours / t_torch:.2f}) |"
        )
        print(
            f"| same with the cheat sheet's layer | {t_sheet * 1000:.0f} ms "
            f"(generated/sheet = {t_ours / t_sheet:.2f}) |"
        )
    print(f"| gpt step (d384 h6 L6 T256 B8) | {t_gpt * 1000:.0f} ms, {rate / 1e9:.1f} GFLOP/s |")
    print(f"| fp32 matmul 2048^3 | {matmul / 1e9:.1f} GFLOP/s (gpt reaches {rate / matmul:.0%}) |")


if __name__ == "__main__":
    main()
