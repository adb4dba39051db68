"""导出：把模型权重存为 safetensors，并附上预测和采样所需的配置与数据信息。"""

import dataclasses
import json
import sys
from pathlib import Path

from char_gpt_zh.checkpoint import CheckpointError, load_trained, safetensors_torch
from char_gpt_zh.config import Parser, out_folder


def export(checkpoint: str, out: Path, raw: bool = False) -> None:
    """写出 model.safetensors（检查点里有 EMA 时用 EMA 权重，除非指定原始权重）、
    config.json 和 data.json。
    """
    save_model = safetensors_torch().save_model
    model, cfg, meta = load_trained(checkpoint, raw)
    out.mkdir(parents=True, exist_ok=True)
    # 用 save_model 而不是 save_file：共享的权重（与输出层共用的嵌入）只存一份。
    save_model(model, str(out / "model.safetensors"))
    config = json.dumps(dataclasses.asdict(cfg), indent=2)
    (out / "config.json").write_text(config + "\n")
    (out / "data.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="把检查点中的模型导出为 safetensors，并附上配置。",
    )
    parser.add_argument("checkpoint", help="一个 .pt 检查点")
    parser.add_argument(
        "-o", "--out", type=out_folder, required=True, help="要写入的目录"
    )
    parser.add_argument(
        "--raw-weights",
        action="store_true",
        help="使用训练得到的原始权重，而不是它们的移动平均（EMA）",
    )
    args = parser.parse_args(argv)
    try:
        export(args.checkpoint, args.out, args.raw_weights)
    except (CheckpointError, OSError) as e:
        msg = "错误：{}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    wrote = "已写出 {}/model.safetensors、config.json 和 data.json"
    print(wrote.format(args.out))


if __name__ == "__main__":
    main()
