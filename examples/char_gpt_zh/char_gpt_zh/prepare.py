"""准备词元分片：python -m char_gpt_zh.prepare INPUT [INPUT ...] --out DIR
[--tokenizer char|bpe]。写出 DIR/train.bin、DIR/val.bin 和 DIR/meta.json，供 train
--data-path DIR 使用。
"""

import codecs
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from char_gpt_zh.config import Parser, flag_type, out_folder

# 每次读取的字节数：无论语料多大，内存占用都保持不变
BLOCK = 1 << 22
# 目录中会被读取的文件；命令行上直接给出的文件不论后缀都会读取。
SUFFIXES = (".txt", ".md", ".rst", ".text", ".py", ".json", ".jsonl", ".csv", ".html")
# BPE 最多在这么多文本上训练，样本分布在整个语料中：它的词表随文本增长。
SAMPLE_BYTES = 16 << 20


class DataError(ValueError):
    """无法使用的数据：文件缺失、为空、是二进制或不是 UTF-8 编码，分片与 meta.json
    不符，或者文本短于一个窗口。
    """


def bpe_library():
    """Hugging Face tokenizers 是可选依赖，只在使用 BPE 分词器时才导入。"""
    try:
        import tokenizers
    except ImportError:
        needed = '--tokenizer bpe 需要 tokenizers：pip install -e ".[bpe]"'
        raise DataError(needed) from None
    return tokenizers


def train_bpe(texts, vocab_size: int, special: list[str]) -> str:
    """在这些文本上训练一个字节级 BPE 分词器（与 GPT-2 相同），返回它的 JSON。
    不下载任何东西：从 256 个字节开始学。
    """
    tokenizers = bpe_library()
    byte_level = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = byte_level
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=byte_level.alphabet(),
        show_progress=False,
    )
    # 逐行交给训练器，而不是整块文本：它的内存随每一项的长度增长（两块共 10 MB
    # 的文本用了 830 MB）。
    lines = (line for text in texts for line in text.splitlines(keepends=True))
    bpe.train_from_iterator(lines, trainer)
    return bpe.to_str()


class BPE:
    """训练好的字节级 BPE 分词器，由它的 JSON 重建（保存在 meta.json
    所在目录和检查点中）。
    """

    def __init__(self, json_text: str):
        self.tokenizer = bpe_library().Tokenizer.from_str(json_text)
        self.size = self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        # 逐行编码，每次 1024 行，在多个线程中并行（内存有界）；
        # 行的切分处与整段编码时的切分处相同。
        lines, ids = text.splitlines(keepends=True), []
        for i in range(0, len(lines), 1024):
            for line in self.tokenizer.encode_batch_fast(lines[i : i + 1024]):
                ids += line.ids
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def read_text(path: Path, start: int = 0, end: int | None = None):
    """按块读取文件字节区间 [start, end) 的 UTF-8 文本：二进制文件（含 NUL 字节）
    或其他编码会被拒绝，并给出文件名。
    """
    if path.stat().st_size == 0:
        msg = "{} 是空的"
        raise DataError(msg.format(path))
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        f.seek(start)
        left = (end if end is not None else path.stat().st_size) - start
        while left > 0:
            data = f.read(min(BLOCK, left))
            if not data:
                break
            if b"\0" in data:
                msg = "{} 是二进制文件，不是文本（含有 NUL 字节）"
                raise DataError(msg.format(path))
            try:
                text = decoder.decode(data, final=len(data) == left)
            except UnicodeDecodeError as e:
                where = f.tell() - len(data) + e.start
                msg = "{} 不是 UTF-8 编码的文本（第 {} 字节）"
                raise DataError(msg.format(path, where)) from None
            left -= len(data)
            yield text


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def char_vocab(texts) -> list[str]:
    """文本中出现的所有字符，按码位排序（即 sorted(set(text))，但内存占用不变）。"""
    seen = np.zeros(0x110000, dtype=bool)
    for text in texts:
        seen[code_points(text)] = True
    return [chr(c) for c in np.flatnonzero(seen)]


class Chars:
    """字符与 id 互相转换，借助一张覆盖所有码位的查找表：numpy 每秒可以编码几十 MB。"""

    def __init__(self, vocab: list[str]):
        self.vocab, self.size = vocab, len(vocab)
        self.table = np.full(0x110000, -1, dtype=np.int32)
        self.table[[ord(ch) for ch in vocab]] = np.arange(len(vocab))

    def encode(self, text: str) -> np.ndarray:
        ids = self.table[code_points(text)]
        if (ids < 0).any():
            unknown = sorted(set(text) - set(self.vocab))
            msg = "词表之外的字符：{}"
            raise DataError(msg.format(unknown[:10]))
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)


def load_tokenizer(meta: dict) -> Chars | BPE:
    """检查点的数据元信息所描述的分词器，所以 sample 不需要别的文件。"""
    if meta.get("tokenizer", "char") == "bpe":
        return BPE(meta["tokenizer_json"])
    return Chars(meta["vocab"])


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


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
                msg = "{} 里没有文本文件（{}）"
                raise DataError(msg.format(path, " ".join(SUFFIXES)))
            files += found
        elif path.is_file():
            if not path.stat().st_size:
                msg = "{} 是空的"
                raise DataError(msg.format(path))
            files.append(path)
        else:
            msg = "{} 处没有文本文件或文件夹"
            raise DataError(msg.format(path))
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
                msg = "{} 部分是空的：请使用更多文本，或换一个 --val-fraction"
                raise DataError(msg.format(split))
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
    parser = Parser(
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
        type=out_folder,
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
        type=flag_type(int),
        default=2048,
        help="bpe 分词器的词表大小",
    )
    parser.add_argument(
        "--val-fraction",
        type=flag_type(float),
        default=0.1,
        help="留作验证的比例：每个文件的末尾，或整个文件",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="替换 --out 中已有的分片",
    )
    args = parser.parse_args(argv)
    out = args.out
    # --out 中已有的分片来自之前的语料，是否替换应由用户决定。
    if (out / "meta.json").exists() and not args.overwrite:
        msg = "错误：{} 中已有词元分片：用 --overwrite 替换它们，或换一个 --out"
        parser.stop(msg.format(args.out))
    if not 0 < args.val_fraction < 1:
        parser.stop("错误：--val-fraction 必须在 (0, 1) 之间")
    if args.tokenizer == "bpe" and not 257 <= args.vocab_size <= 2**32:
        parser.stop("错误：bpe 的 --vocab-size 必须在 [257, 2**32] 之间")
    started, inputs = time.perf_counter(), args.inputs
    try:
        meta = prepare(inputs, out, args.tokenizer, args.vocab_size, args.val_fraction)
    except DataError as e:
        msg = "错误：{}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    seconds = time.perf_counter() - started
    size = sum(p["bytes"] for p in meta["sources"]) / 1e6
    done = "{out}：{train} + {val} 个词元，词表 {vocab}（{dtype}），{rate:.1f} MB/s"
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
