"""准备词元分片：python -m char_gpt_zh.prepare INPUT [INPUT ...] --out DIR
[--tokenizer char|bpe]。写出 DIR/train.bin、DIR/val.bin 和 DIR/meta.json，供 train
--data-path DIR 使用。
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from char_gpt_zh.data import (
    BLOCK,
    BPE,
    Chars,
    DataError,
    char_vocab,
    read_text,
    token_dtype,
    train_bpe,
)

# 目录中会被读取的文件；命令行上直接给出的文件不论后缀都会读取。
SUFFIXES = (".txt", ".md", ".rst", ".text", ".py", ".json", ".jsonl", ".csv", ".html")
# BPE 最多在这么多文本上训练，样本分布在整个语料中：它的词表随文本增长。
SAMPLE_BYTES = 32 << 20


def text_files(inputs: list[str]) -> list[Path]:
    """输入中的所有文件，目录按排序后的顺序遍历；没有文本文件的目录会被拒绝。"""
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
            )
            # 目录中的空文件（例如 __init__.py）没有内容可加
            found = [p for p in found if p.stat().st_size]
            if not found:
                raise DataError(f"{path} holds no text files ({' '.join(SUFFIXES)})")
            files += found
        elif path.is_file():
            if not path.stat().st_size:
                raise DataError(f"{path} is empty")
            files.append(path)
        else:
            raise DataError(f"no text file or folder at {path}")
    return files


def char_start(path: Path, offset: int) -> int:
    """把字节偏移向前移到一个 UTF-8 字符的起点。"""
    with open(path, "rb") as f:
        while offset > 0:
            f.seek(offset)
            byte = f.read(1)
            if not byte or not 0x80 <= byte[0] < 0xC0:
                return offset
            offset -= 1
    return offset


def plan(files: list[Path], val_fraction: float) -> list[dict]:
    """每个文件的训练部分在哪里结束。文件很多时，留出整个文件（均匀挑选）；
    否则留出每个文件的末尾。验证文本绝不会出现在训练文本中。
    """
    whole = len(files) * val_fraction >= 2
    parts = []
    for i, path in enumerate(files):
        size = path.stat().st_size
        if whole:
            held = math.floor((i + 1) * val_fraction) > math.floor(i * val_fraction)
            cut = 0 if held else size
        else:
            cut = char_start(path, round(size * (1 - val_fraction)))
        parts.append({"path": str(path), "bytes": size, "train_bytes": cut})
    return parts


def pieces(part: dict, split: str):
    """一个文件的训练部分或留出部分的文本。"""
    path, cut = Path(part["path"]), part["train_bytes"]
    start, end = (0, cut) if split == "train" else (cut, part["bytes"])
    return read_text(path, start, end) if end > start else []


def bpe_sample(parts: list[dict]):
    """从训练部分中均匀间隔地取块，总共 SAMPLE_BYTES 字节。"""
    total = sum(p["train_bytes"] for p in parts)
    share = min(1.0, SAMPLE_BYTES / max(total, 1))
    for part in parts:
        path, size = Path(part["path"]), part["train_bytes"]
        blocks = math.ceil(size * share / BLOCK)
        for k in range(blocks):
            start = char_start(path, size * k // blocks)
            end = char_start(path, min(size, start + BLOCK))
            yield from read_text(path, start, end) if end > start else []


def lines_of(texts):
    """在行尾重新切分文本块，使任何词都不会被分到两个块中。"""
    carry = ""
    for text in texts:
        text = carry + text
        cut = text.rfind("\n") + 1 or len(text)
        carry = text[cut:]
        yield text[:cut]
    if carry:
        yield carry


def prepare(
    inputs: list[str], out: Path, tokenizer: str, vocab_size: int, val_fraction: float
) -> dict:
    """把输入切分为词元写入 out/。每个文件先以 .tmp 名字写出，全部完成后才重命名；
    meta.json 最后重命名，所以被中断的 prepare 不会留下训练会接受的文件。
    """
    files = text_files(inputs)
    parts = plan(files, val_fraction)
    out.mkdir(parents=True, exist_ok=True)
    # 在新分片完成之前，旧分片不再有效。
    (out / "meta.json").unlink(missing_ok=True)
    meta = {"tokenizer": tokenizer, "val_fraction": val_fraction}
    written = []
    try:
        if tokenizer == "bpe":
            text = train_bpe(lines_of(bpe_sample(parts)), vocab_size, [])
            encoder = BPE(text)
            written.append(write(out / "tokenizer.json", text.encode()))
        else:
            every = (t for s in ("train", "val") for p in parts for t in pieces(p, s))
            encoder = Chars(char_vocab(every))
            meta["vocab"] = encoder.vocab
        dtype = token_dtype(encoder.size)
        meta.update(vocab_size=encoder.size, dtype=dtype.name)
        for split in ("train", "val"):
            tmp = out / f"{split}.bin.tmp"
            with open(tmp, "wb") as f:
                for part in parts:
                    for text in lines_of(pieces(part, split)):
                        np.asarray(encoder.encode(text), dtype=dtype).tofile(f)
                count = f.tell() // dtype.itemsize
            if not count:
                raise DataError(
                    f"the {split} split is empty: use more text or another "
                    "--val-fraction"
                )
            meta[f"{split}_tokens"] = count
            written.append(tmp)
        meta["sources"] = parts
        written.append(write(out / "meta.json", json.dumps(meta, indent=1).encode()))
        for tmp in written:
            tmp.replace(tmp.with_suffix(""))
    finally:
        for name in ("tokenizer.json", "train.bin", "val.bin", "meta.json"):
            (out / f"{name}.tmp").unlink(missing_ok=True)
    return meta


def write(path: Path, data: bytes) -> Path:
    """以临时名字写出这些字节；由调用者重命名。"""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    return tmp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="把文本文件切分为词元分片，供 train --data-path 使用。",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="文本文件，或包含文本文件的目录",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="写出 train.bin、val.bin、meta.json（以及 tokenizer.json）的目录",
    )
    parser.add_argument(
        "--tokenizer",
        choices=["char", "bpe"],
        default="char",
        help="char（无额外依赖）或 bpe（需要 bpe 可选依赖 tokenizers）",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=2048,
        help="bpe 分词器的词表大小",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="留作验证的比例：每个文件的末尾，或整个文件",
    )
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        parser.exit(2, "error: --val-fraction must be in (0, 1)\n")
    if args.tokenizer == "bpe" and not 257 <= args.vocab_size <= 2**32:
        parser.exit(2, "error: --vocab-size must be in [257, 2**32] for bpe\n")
    started, inputs, out = time.perf_counter(), args.inputs, Path(args.out)
    try:
        meta = prepare(inputs, out, args.tokenizer, args.vocab_size, args.val_fraction)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    seconds = time.perf_counter() - started
    size = sum(p["bytes"] for p in meta["sources"]) / 1e6
    done = "已写出 {out}：训练词元 {train} 个，验证词元 {val} 个，词表大小 {vocab}（{dtype}），{rate:.1f} MB/s"
    print(
        done.format(
            out=args.out,
            train=meta["train_tokens"],
            val=meta["val_tokens"],
            vocab=meta["vocab_size"],
            dtype=meta["dtype"],
            rate=size / max(seconds, 1e-9),
        )
    )


if __name__ == "__main__":
    main()
