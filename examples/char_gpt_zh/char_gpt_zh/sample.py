"""采样：python -m char_gpt_zh.sample --checkpoint PATH --prompt TEXT
--max-new-tokens N
"""

import argparse
import math
import sys

import torch

from char_gpt_zh.checkpoint import CheckpointError, load_trained


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="用训练好的检查点或导出目录生成文本。",
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best.pt")
    parser.add_argument(
        "--prompt",
        default="\n",
        help="要续写的文本；留空则从词表的第一项开始",
    )
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="小于 1 时生成更保守"
    )
    parser.add_argument(
        "--top-k", type=int, default=0, help="只从最可能的 k 个词元中采样；0 表示不限"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--raw-weights",
        action="store_true",
        help="使用训练得到的原始权重，而不是它们的移动平均（EMA）",
    )
    args = parser.parse_args(argv)
    if not 0 < args.temperature < math.inf:
        parser.error("--temperature must be a finite number > 0")
    if args.max_new_tokens < 0:
        parser.error("--max-new-tokens must be >= 0")
    try:
        model, cfg, meta = load_trained(args.checkpoint, args.raw_weights)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    vocab = meta["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(args.prompt) - set(index))
    if unknown:
        parser.error(f"the prompt has characters the model never saw: {unknown}")
    torch.manual_seed(args.seed)
    model.eval()
    # 提示为空时，从词表里的第一个字符开始生成（多数文本里是换行符），
    # 这个字符本身不打印。
    prompt = args.prompt or vocab[0]
    idx = torch.tensor([[index[ch] for ch in prompt]])
    out = model.generate(idx, args.max_new_tokens, args.temperature, args.top_k)
    print("".join(vocab[i] for i in out[0, len(prompt) - len(args.prompt) :].tolist()))


if __name__ == "__main__":
    main()
