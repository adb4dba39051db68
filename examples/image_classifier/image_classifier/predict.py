"""Predict: python -m image_classifier.predict --checkpoint PATH [--data-path FILE]"""

import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from image_classifier.checkpoint import CheckpointError, load_trained
from image_classifier.config import Parser
from image_classifier.data import (
    DataError,
    ImageFolder,
    build_datasets,
    encode,
    image_files,
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
            data = build_datasets(cfg).val
        elif Path(args.data_path).is_dir():
            # Decoded batch by batch: memory stays bounded whatever the folder's size.
            names = image_files(Path(args.data_path))
            data = ImageFolder(names, torch.zeros(len(names)), cfg, meta)
        else:
            data = TensorDataset(encode(meta, read_npz(args.data_path)[0]))
        model.eval()
        # A TSV with a header: each prediction next to the row (or file) it is for.
        print(("file" if names else "row") + "\tprediction")
        row = 0
        for batch in DataLoader(data, cfg.batch_size, num_workers=cfg.num_workers):
            with torch.no_grad():
                output = model(batch[0])
            predictions = [meta["classes"][i] for i in output.argmax(dim=-1).tolist()]
            for p in predictions:
                print(f"{names[row] if names else row + 1}\t{p}")
                row += 1
    except (CheckpointError, DataError) as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
