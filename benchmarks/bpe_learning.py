"""Does the default gpt learn from BPE shards? Issue #14 asks that its validation loss fall
to at most 0.9x the unigram entropy of the tokens within a few hundred steps.

    python benchmarks/bpe_learning.py [--mb 2] [--steps 300] [--vocab-size 1024]

The corpus is text from a Markov chain over 2,000 invented words (each word has 6
possible successors), in lines of about 12 words: structure at two scales, spelling and
word order, which a unigram model cannot see. It is prepared with `--tokenizer bpe`, the
unigram entropy is computed from the token counts of train.bin, and the default gpt
(`python -m PKG.train --data-path DIR`, default config, CPU) trains for --steps steps.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scaffold.generate import generate
from scaffold.spec import build_spec


def markov_text(megabytes: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(2000)]
    successors = [rng.sample(range(len(words)), 6) for _ in words]
    out, size, word = [], 0, 0
    while size < megabytes * 1e6:
        word = rng.choice(successors[word])
        out.append(words[word] + ("\n" if rng.random() < 1 / 12 else " "))
        size += len(out[-1])
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=2)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--vocab-size", type=int, default=1024)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bpe_learning_"))
    try:
        generate(build_spec("bench_lm", model="gpt"), root / "bench_lm")
        (root / "corpus").mkdir()
        (root / "corpus" / "text.txt").write_text(markov_text(args.mb))
        run = dict(cwd=root / "bench_lm", check=True, capture_output=True, text=True)
        prepare = [sys.executable, "-m", "bench_lm.prepare", str(root / "corpus")]
        prepare += ["--out", str(root / "bpe"), "--tokenizer", "bpe"]
        subprocess.run(prepare + ["--vocab-size", str(args.vocab_size)], **run)
        counts = np.bincount(np.fromfile(root / "bpe" / "train.bin", np.uint16))
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log(p)).sum())
        train = [sys.executable, "-m", "bench_lm.train", "--data-path", str(root / "bpe")]
        train += ["--device", "cpu", "--max-steps", str(args.steps), "--eval-every", "100"]
        started = time.perf_counter()
        subprocess.run(train + ["--out-dir", str(root / "run")], **run)
        seconds = time.perf_counter() - started
        lines = (root / "run" / "metrics.jsonl").read_text().splitlines()
        val = [e for e in map(json.loads, lines) if e["split"] == "val"]
        print(f"unigram entropy of the tokens: {entropy:.3f} nats; train {seconds:.0f} s")
        print("| step | val loss | / unigram entropy |")
        print("|---|---|---|")
        for e in val:
            print(f"| {e['step']} | {e['loss']:.3f} | {e['loss'] / entropy:.2f} |")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
