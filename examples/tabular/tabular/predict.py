"""Predict: python -m tabular.predict --checkpoint PATH [--data-path FILE]"""

import sys

import torch

from tabular.checkpoint import CheckpointError, load_trained
from tabular.config import Parser
from tabular.data import DataError, build_datasets, encode, read_csv


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="Print one prediction per example.",
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best.pt")
    parser.add_argument(
        "--data-path",
        default="",
        help="a CSV with the training feature columns; empty = the validation split",
    )
    args = parser.parse_args(argv)
    try:
        model, cfg, meta = load_trained(args.checkpoint)
        if args.data_path:
            features, x, labels = read_csv(args.data_path, cfg.target)
            if features != meta["features"]:
                msg = "{} has columns {}, not {}"
                raise DataError(msg.format(args.data_path, features, meta["features"]))
            x = encode(meta, x)
        else:
            x, y = build_datasets(cfg).val.tensors
            labels = [meta["classes"][i] for i in y]
    except (CheckpointError, DataError) as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    model.eval()
    with torch.no_grad():
        output = model(x)
    predictions = [meta["classes"][i] for i in output.argmax(dim=-1).tolist()]
    # A TSV with a header: each prediction next to the row (or file) it is for.
    print("row\tprediction")
    for row, p in enumerate(predictions, start=1):
        print(f"{row}\t{p}")
    if labels is not None:
        accuracy = sum(p == t for p, t in zip(predictions, labels, strict=True)) / len(
            labels
        )
        msg = "accuracy: {:.4f} on {} examples"
        print(msg.format(accuracy, len(labels)), file=sys.stderr)


if __name__ == "__main__":
    main()
