"""采样：python -m char_gpt_zh.sample --checkpoint PATH --prompt TEXT
--max-new-tokens N
"""

import argparse
import sys

import torch

from char_gpt_zh.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    model_weights,
)
from char_gpt_zh.config import Config
from char_gpt_zh.model import build_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Generate text from a trained checkpoint."
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best.pt")
    parser.add_argument("--prompt", default="\n", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="< 1 is more conservative"
    )
    parser.add_argument(
        "--top-k", type=int, default=0, help="sample from the k likeliest; 0 = all"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--raw-weights",
        action="store_true",
        help="use the trained weights, not their moving average (EMA)",
    )
    args = parser.parse_args(argv)
    if args.temperature <= 0:
        parser.error("--temperature must be > 0")
    try:
        ckpt = load_checkpoint(args.checkpoint)
        cfg = Config(**ckpt["config"])
        model = build_model(cfg)
        load_model_state(model, model_weights(ckpt, args.raw_weights))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    vocab = ckpt["data"]["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(args.prompt) - set(index))
    if unknown:
        parser.error(f"the prompt has characters the model never saw: {unknown}")
    torch.manual_seed(args.seed)
    model.eval()
    idx = torch.tensor([[index[ch] for ch in args.prompt]])
    out = model.generate(idx, args.max_new_tokens, args.temperature, args.top_k)
    print("".join(vocab[i] for i in out[0].tolist()))


if __name__ == "__main__":
    main()
