"""Throughput and peak memory of a generated gpt project's `prepare`, char and bpe, on a
synthetic corpus of --mb megabytes (issue #14: peak RSS under 600 MB whatever the corpus
size, char at least 20 MB/s).

    python benchmarks/prepare_speed.py [--mb 200] [--files 8] [--tokenizers char bpe]

The corpus is written to a temporary folder: --files files of words drawn from a Zipf
distribution over 20,000 invented words, in lines of about 12 words, so BPE has a
realistic word table to learn. Each prepare runs in its own process (`python -m
PKG.prepare`); its peak RSS is the process's ru_maxrss. Throughput is corpus bytes over
wall time, both passes included (char reads the corpus twice: vocabulary, then ids).
"""

import argparse
import os
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


def write_corpus(folder: Path, megabytes: int, files: int) -> int:
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(20_000)])
    weights = 1 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    per_file = megabytes * 10**6 // files
    for i in range(files):
        with open(folder / f"part{i:02}.txt", "w", encoding="utf-8") as f:
            written = 0
            while written < per_file:
                drawn = words[rng.choice(len(words), 120_000, p=weights)].reshape(-1, 12)
                text = "\n".join(" ".join(line) for line in drawn) + "\n"
                f.write(text)
                written += len(text)
    return sum(p.stat().st_size for p in folder.iterdir())


def run_prepare(project: Path, package: str, corpus: Path, out: Path, tokenizer: str):
    cmd = [sys.executable, "-m", f"{package}.prepare", str(corpus), "--out", str(out)]
    cmd += ["--tokenizer", tokenizer]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    message = proc.stdout.read().strip()
    if status:
        raise SystemExit(f"prepare failed: {message}")
    return seconds, usage.ru_maxrss / 1024, message  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--tokenizers", nargs="+", default=["char", "bpe"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="prepare_speed_"))
    try:
        project = root / "bench_gpt"
        generate(build_spec("bench_gpt", model="gpt"), project)
        corpus = root / "corpus"
        corpus.mkdir()
        started = time.perf_counter()
        size = write_corpus(corpus, args.mb, args.files)
        print(f"corpus: {size / 1e6:.0f} MB in {args.files} files", end=" ")
        print(f"({time.perf_counter() - started:.0f} s to write)")
        print("| tokenizer | corpus MB | seconds | MB/s | peak RSS MB | tokens |")
        print("|---|---|---|---|---|---|")
        for tokenizer in args.tokenizers:
            out = root / f"shards_{tokenizer}"
            seconds, rss, message = run_prepare(project, "bench_gpt", corpus, out, tokenizer)
            tokens = sum((out / f"{s}.bin").stat().st_size for s in ("train", "val"))
            tokens //= 2 if "uint16" in message else 4
            print(
                f"| {tokenizer} | {size / 1e6:.0f} | {seconds:.1f} | {size / 1e6 / seconds:.1f}"
                f" | {rss:.0f} | {tokens:,} |",
                flush=True,
            )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
