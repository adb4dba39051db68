"""Predict: python -m text_classifier.predict --checkpoint PATH [--data-path FILE]"""

import sys

import torch

from text_classifier.checkpoint import CheckpointError, load_trained
from text_classifier.config import Parser
from text_classifier.data import DataError, build_datasets, encode, read_tsv


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="Print one prediction per line of text.",
    )
    parser.add_argument("--checkpoint", default="runs/default/checkpoints/best.pt")
    parser.add_argument(
        "--data-path",
        default="",
        help="a text file, one example a line; empty = the validation split",
    )
    args = parser.parse_args(argv)
    try:
        model, cfg, meta = load_trained(args.checkpoint)
        if args.data_path:
            tokens = encode(read_tsv(args.data_path)[1], meta, cfg)
        else:
            tokens, _ = build_datasets(cfg).val.tensors
    except (CheckpointError, DataError) as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    model.eval()
    with torch.no_grad():
        output = model(tokens)
    predictions = [meta["classes"][i] for i in output.argmax(dim=-1).tolist()]
    # A TSV with a header: each prediction next to the row (or file) it is for.
    print("row\tprediction")
    for row, p in enumerate(predictions, start=1):
        print(f"{row}\t{p}")


if __name__ == "__main__":
    main()
