"""Regenerate the golden example projects in examples/ (python scripts/update_examples.py).

tests/test_examples.py fails when a template change alters them, so every change to the
generated code shows up as a reviewable diff of these files."""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaffold.generate import render
from scaffold.spec import build_spec

EXAMPLES = {
    "tabular": {},
    "text_classifier": {"model": "transformer", "amp": True, "ddp": True, "tooling": True},
    "image_classifier": {"model": "cnn", "fsdp": True, "grad_checkpointing": True},
    "char_gpt_zh": {"model": "gpt", "ema": True, "teach": True, "lang": "zh"},
}


def main() -> None:
    for name, options in EXAMPLES.items():
        target = ROOT / "examples" / name
        shutil.rmtree(target, ignore_errors=True)
        for rel, text in render(build_spec(name, **options)).items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if text.startswith("#!"):
                path.chmod(0o755)
        print(f"examples/{name}")


if __name__ == "__main__":
    main()
