"""采样：python -m char_gpt_zh.sample --checkpoint PATH --prompt TEXT
--max-new-tokens N
"""

import math
import sys

import torch

from char_gpt_zh.checkpoint import CheckpointError, load_trained
from char_gpt_zh.config import Config, ConfigError, Parser, flag_type
from char_gpt_zh.prepare import DataError, load_tokenizer
from char_gpt_zh.train import pick_device


def refuse(message: str, code: int) -> None:
    """错误的参数在 stderr 上输出一行，并以相应的退出码结束。"""
    msg = "错误：{}"
    print(msg.format(message), file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="用训练好的检查点或导出目录生成文本。",
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best.pt")
    parser.add_argument(
        "--prompt",
        default=None,
        help="要续写的文本（默认：换行符）；留空则从词表的第一项开始",
    )
    parser.add_argument("--max-new-tokens", type=flag_type(int), default=200)
    parser.add_argument(
        "--temperature",
        type=flag_type(float),
        default=0.8,
        help="小于 1 时生成更保守",
    )
    parser.add_argument(
        "--top-k",
        type=flag_type(int),
        default=0,
        help="只从最可能的 k 个词元中采样；0 表示不限",
    )
    parser.add_argument("--seed", type=flag_type(int), default=0)
    parser.add_argument(
        "--device",
        default="auto",
        help="auto、cpu、cuda、cuda:N 或 mps",
    )
    parser.add_argument(
        "--raw-weights",
        action="store_true",
        help="使用训练得到的原始权重，而不是它们的移动平均（EMA）",
    )
    args = parser.parse_args(argv)
    if not 0 < args.temperature < math.inf:
        refuse("--temperature 必须是大于 0 的有限数", 2)
    if args.max_new_tokens < 0:
        refuse("--max-new-tokens 必须大于等于 0", 2)
    if not 0 <= args.seed < 2**32:
        msg = "--seed 必须在 [0, 2**32) 之间，而不是 {}"
        refuse(msg.format(args.seed), 2)
    try:
        # 与 train 的 Config 相同的设备检查：一行错误，退出码 2
        Config(device=args.device)
        device = pick_device(args.device)
    except ConfigError as e:
        refuse(str(e), 2)
    try:
        model, cfg, meta = load_trained(args.checkpoint, args.raw_weights)
        tokenizer = load_tokenizer(meta)
    except (CheckpointError, DataError) as e:
        refuse(str(e), 1)
    try:
        ids = list(tokenizer.encode("\n" if args.prompt is None else args.prompt))
    except DataError as e:
        if args.prompt is not None:
            msg = "提示词中有{}"
            refuse(msg.format(e), 2)
        # 不给 --prompt 时从一个换行符开始；语料中没有换行符时，从词表的第一项开始。
        ids = []
    torch.manual_seed(args.seed)
    model.to(device).eval()
    # 提示为空时，从词表里的第一个字符开始生成（多数文本里是换行符），
    # 这个字符本身不打印。
    start = ids or [0]
    idx = torch.tensor([start], device=device)
    out = model.generate(idx, args.max_new_tokens, args.temperature, args.top_k)
    print(tokenizer.decode(out[0, len(start) - len(ids) :].tolist()))


if __name__ == "__main__":
    main()
