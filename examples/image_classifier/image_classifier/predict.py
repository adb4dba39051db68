"""Predict: python -m image_classifier.predict --checkpoint PATH [--data-path FILE]"""

import sys
from pathlib import Path

import torch

from image_classifier.checkpoint import CheckpointError, load_trained
from image_classifier.config import Parser
from image_classifier.data import (
    DataError,
    build_datasets,
    encode,
    read_images,
    read_npz,
)


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="Print one prediction per image.",
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best")
    parser.add_argument(
        "--data-path",
        default="",
        help="an image folder or a .npz with x (N, C, H, W); empty = the val split",
    )
    args = parser.parse_args(argv)
    try:
        model, cfg, meta = load_trained(args.checkpoint)
        names = None
        if not args.data_path:
            x, _ = build_datasets(cfg).val.tensors
        elif Path(args.data_path).is_dir():
            x, _, names = read_images(args.data_path, cfg.image_size)
            x = encode(meta, x)
        else:
            x = encode(meta, read_npz(args.data_path)[0])
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    model.eval()
    with torch.no_grad():
        output = model(x)
    predictions = [meta["classes"][i] for i in output.argmax(dim=-1).tolist()]
    # A TSV with a header: each prediction next to the row (or file) it is for.
    print(("file" if names else "row") + "\tprediction")
    for i, p in enumerate(predictions):
        print(f"{names[i] if names else i + 1}\t{p}")


if __name__ == "__main__":
    main()
