"""Export: the model's weights as safetensors, with the config and the data facts
predict or sample need.
"""

import dataclasses
import json
import sys
from pathlib import Path

from text_classifier.checkpoint import CheckpointError, load_trained, safetensors_torch
from text_classifier.config import Parser, out_folder


def export(checkpoint: str, out: Path, raw: bool = False) -> None:
    """Write model.safetensors (the EMA weights when the checkpoint has them, unless
    raw), config.json and data.json.
    """
    save_model = safetensors_torch().save_model
    model, cfg, meta = load_trained(checkpoint, raw)
    out.mkdir(parents=True, exist_ok=True)
    # save_model, not save_file: it stores tied weights (the embedding shared with the
    # output layer) once.
    save_model(model, str(out / "model.safetensors"))
    config = json.dumps(dataclasses.asdict(cfg), indent=2)
    (out / "config.json").write_text(config + "\n")
    (out / "data.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        description="Export a checkpoint's model as safetensors, with its config.",
    )
    parser.add_argument("checkpoint", help="a .pt checkpoint")
    parser.add_argument(
        "-o", "--out", type=out_folder, required=True, help="the folder to write"
    )
    args = parser.parse_args(argv)
    try:
        export(args.checkpoint, args.out)
    except (CheckpointError, OSError) as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    wrote = "wrote {}/model.safetensors, config.json and data.json"
    print(wrote.format(args.out))


if __name__ == "__main__":
    main()
