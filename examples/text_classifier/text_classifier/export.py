"""Export: the model's weights as safetensors, with the config and the data facts
predict or sample need.
"""

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from text_classifier.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
)
from text_classifier.config import Config
from text_classifier.model import build_model

INSTALL = "safetensors is needed: pip install safetensors"


def export(ckpt: dict, out: Path, raw: bool = False) -> None:
    """Write model.safetensors (the EMA weights when the checkpoint has them, unless
    raw), config.json and data.json.
    """
    from safetensors.torch import save_model

    model = build_model(Config(**ckpt["config"]))
    load_model_state(model, ckpt["model"])
    out.mkdir(parents=True, exist_ok=True)
    # save_model, not save_file: it stores tied weights (the embedding shared with the
    # output layer) once.
    save_model(model, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(ckpt["config"], indent=2) + "\n")
    (out / "data.json").write_text(json.dumps(ckpt["data"], indent=2) + "\n")


def load_export(folder: Path) -> tuple[nn.Module, Config, dict]:
    """The exported model, its config and its data facts: build_model plus the
    safetensors file reproduce the checkpoint's outputs exactly.
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
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        export(ckpt, Path(args.out))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except ImportError:
        print(f"error: {INSTALL}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {args.out}/model.safetensors, config.json and data.json")


if __name__ == "__main__":
    main()
