"""导出：把模型权重存为 safetensors，并附上预测和采样所需的配置与数据信息。"""

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from char_gpt_zh.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    model_weights,
)
from char_gpt_zh.config import Config
from char_gpt_zh.model import build_model

INSTALL = "safetensors is needed: pip install safetensors"


def export(ckpt: dict, out: Path, raw: bool = False) -> None:
    """写出 model.safetensors（检查点里有 EMA 时用 EMA 权重，除非指定原始权重）、
    config.json 和 data.json。
    """
    from safetensors.torch import save_model

    model = build_model(Config(**ckpt["config"]))
    load_model_state(model, model_weights(ckpt, raw))
    out.mkdir(parents=True, exist_ok=True)
    # 用 save_model 而不是 save_file：共享的权重（与输出层共用的嵌入）只存一份。
    save_model(model, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(ckpt["config"], indent=2) + "\n")
    (out / "data.json").write_text(json.dumps(ckpt["data"], indent=2) + "\n")


def load_export(folder: Path) -> tuple[nn.Module, Config, dict]:
    """导出的模型、它的配置和数据信息：build_model 加上 safetensors 文件，
    输出与检查点完全相同。
    """
    from safetensors.torch import load_model

    cfg = Config(**json.loads((folder / "config.json").read_text()))
    model = build_model(cfg)
    load_model(model, str(folder / "model.safetensors"))
    return model, cfg, json.loads((folder / "data.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write a checkpoint's model as model.safetensors, config.json and "
        "data.json."
    )
    parser.add_argument("checkpoint", help="a .pt checkpoint")
    parser.add_argument("-o", "--out", required=True, help="the folder to write")
    parser.add_argument(
        "--raw-weights",
        action="store_true",
        help="export the trained weights, not their moving average (EMA)",
    )
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        export(ckpt, Path(args.out), args.raw_weights)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except ImportError:
        print(f"error: {INSTALL}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {args.out}/model.safetensors, config.json and data.json")


if __name__ == "__main__":
    main()
