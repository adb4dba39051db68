"""数据：默认是合成语料；--data-path 接受纯文本文件（按字符切分，放在内存中），或由
python -m char_gpt_zh.prepare 生成的词元分片目录。
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from char_gpt_zh.config import Config
from char_gpt_zh.prepare import Chars, DataError, char_vocab, read_text, token_dtype

# 验证最多读取这么多个窗口，均匀分布在留出的词元上
MAX_VAL_WINDOWS = 1024


@dataclass
class Data:
    train: Dataset
    val: Dataset
    sizes: dict  # 由数据决定的 Config 字段
    meta: dict  # 推理或采样也需要的普通值


class GlobalBatches(Sampler[list[int]]):
    """单个进程的微批次，从一个只取决于（种子，轮）的全局顺序中切出。
    一轮中第 j 个全局微批次是 order[j*B*W : (j+1)*B*W]，第 r
    个进程取其中属于自己的 B 个。因此无论有多少个进程，看到的全局样本序列都相同；
    续训时可以在 O(1) 时间内从任意样本开始，跳过时不必读取任何数据。
    """

    def __init__(self, n: int, cfg: Config, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank = n, cfg.seed, rank
        self.batch_size, self.world = cfg.batch_size, world
        # 一轮只包含完整的优化器步；剩下的少量样本留给下一轮重新打乱。
        self.step_samples = cfg.batch_size * cfg.grad_accum_steps * world
        # 一轮（epoch）是 (tokens - 1) // seq_len 个随机窗口，至少够一次优化器更新。
        self.n = n = max(n, self.step_samples)
        self.usable = n // self.step_samples * self.step_samples
        self.epoch, self.start = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.usable // self.step_samples

    def set_position(self, epoch: int, start: int) -> None:
        """下一遍从第 epoch 轮的第 start 个样本开始（按所有进程合计）。"""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return (self.usable - self.start) // (self.batch_size * self.world)

    def __iter__(self):
        # 样本键跨轮连续编号（epoch * n + i），每个键对应一个独立的窗口：
        # 不需要构建排列，续训可以在 O(1) 时间内从任意键开始。
        first = self.epoch * self.n + self.rank * self.batch_size
        for start in range(self.start, self.usable, self.batch_size * self.world):
            yield list(range(first + start, first + start + self.batch_size))


def micro_batches(loader: DataLoader, epoch: int, consumed: int):
    """不断产出（轮，已消耗样本数，批次），从第 epoch 轮的第 consumed 个样本开始。
    一轮的顺序只取决于（种子，轮），而采样器可以从其中任意位置开始，
    所以续训时恰好接着产出下一个本该看到的批次，无需读取之前的批次。
    """
    sampler = loader.batch_sampler
    while True:
        sampler.set_position(epoch, consumed)
        for batch in loader:
            consumed += sampler.batch_size * sampler.world
            yield epoch, consumed, batch
        epoch, consumed = epoch + 1, 0


def loaders(data: Data, cfg: Config, device, rank: int, world: int) -> tuple:
    """训练数据加载器从 GlobalBatches 取批次；验证集在各进程之间切分。"""
    # 锁页内存让 non_blocking 拷贝真正异步；工作进程在 GPU 训练的同时解码数据。
    workers = dict(
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    batches = GlobalBatches(len(data.train), cfg, rank, world)
    if batches.steps_per_epoch == 0:
        msg = (
            "训练集只有 {n} 个样本，不够一次优化器更新（{need} 个）；"
            "请调小 --batch-size"
        )
        raise DataError(msg.format(n=len(data.train), need=batches.step_samples))
    # DataLoader 使用独立的生成器：创建迭代器时不会从 dropout
    # 所用的全局随机数生成器取数，精确恢复训练需要这一点。
    train = DataLoader(
        data.train, batch_sampler=batches, generator=torch.Generator(), **workers
    )
    return train, DataLoader(
        data.val, batch_size=cfg.batch_size, generator=torch.Generator(), **workers
    )


def synthetic_text(cfg: Config) -> str:
    """由 40 个虚构单词上的随机马尔可夫链生成的句子。
    文本在两个尺度上有结构：单词的拼写，以及哪个词可以跟在哪个词后面，
    所以损失可以降到远低于字符的一元熵。
    """
    g = torch.Generator().manual_seed(cfg.seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    while len(words) < 40:
        length = int(torch.randint(2, 7, (1,), generator=g))
        word = "".join(
            letters[int(i)] for i in torch.randint(26, (length,), generator=g)
        )
        if word not in words:
            words.append(word)
    successors = torch.randint(len(words), (len(words), 3), generator=g)
    out, word, size = [], 0, 0
    while size < cfg.corpus_chars:
        end = ".\n" if torch.rand(1, generator=g) < 0.15 else " "
        out.append(words[word] + end)
        size += len(out[-1])
        word = int(successors[word, int(torch.randint(3, (1,), generator=g))])
    return "".join(out)[: cfg.corpus_chars]


class Shard:
    """磁盘上的一个词元分片，通过 numpy.memmap 读取：只加载窗口用到的页。"""

    def __init__(self, path: Path, dtype: str):
        self.path, self.dtype = path, dtype
        self.ids = np.memmap(path, dtype=dtype, mode="r")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        return self.ids[index]

    def __getstate__(self) -> dict:
        # DataLoader 的工作进程重新打开文件，而不是复制词元
        return {"path": self.path, "dtype": self.dtype}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


MASK = 2**64 - 1


def window_start(seed: int, key: int, span: int) -> int:
    """窗口 `key` 的起点：(seed, key) 的固定哈希（splitmix64），
    而不是从随机数生成器中抽取。任何进程、任何一次续训都只凭 key 算出同一个窗口。
    """
    x = ((seed << 40) + key + 1) * 0x9E3779B97F4A7C15 & MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    return (x ^ (x >> 31)) % span


class Windows(Dataset):
    """长为 seq_len 的词元窗口，与右移一位的同一窗口配对（即下一个词元的预测目标）。
    训练窗口 `key` 的起点是 (seed, key) 的哈希，像 nanoGPT 那样随机取窗口；
    验证窗口首尾相接。
    """

    def __init__(self, ids, seq_len: int, seed: int | None = None, limit: int = 0):
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        self.count = (len(ids) - 1) // seq_len
        # 验证窗口互不重叠；超过 `limit` 个时均匀分布。
        self.stride = seq_len * max(1, self.count // limit) if limit else seq_len
        self.count = min(self.count, limit) if limit else self.count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.seed is None:
            start = key * self.stride
        else:
            start = window_start(self.seed, key, len(self.ids) - self.seq_len)
        window = self.ids[start : start + self.seq_len + 1].astype(np.int64)
        chunk = torch.from_numpy(window)
        return chunk[:-1], chunk[1:]


def shard_meta(folder: Path) -> tuple[dict, int, str]:
    """在训练之前，用 meta.json 核对分片（dtype、大小、词表）；
    返回要存入检查点的分词器、词表大小和 dtype。
    """
    path = folder / "meta.json"
    if not path.is_file():
        msg = (
            "{folder} 里没有 meta.json：请用 python -m {pkg}.prepare TEXT --out "
            "{folder} 生成词元分片"
        )
        raise DataError(msg.format(folder=folder, pkg="char_gpt_zh"))
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        dtype, vocab_size = np.dtype(meta["dtype"]), int(meta["vocab_size"])
        sizes = {s: int(meta[f"{s}_tokens"]) * dtype.itemsize for s in ("train", "val")}
        bpe = meta["tokenizer"] == "bpe"
        text = (folder / "tokenizer.json").read_text("utf-8") if bpe else ""
        words = json.loads(text)["model"]["vocab"] if bpe else meta["vocab"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        msg = "{} 描述的不是词元分片（{!r}）"
        raise DataError(msg.format(path, e)) from None
    if dtype != token_dtype(vocab_size) or len(words) != vocab_size:
        msg = (
            "{} 前后不一致：{} 类型的编号对应 {} 个词的词表，实际有 {} 个词元；"
            "请重新运行 prepare"
        )
        raise DataError(msg.format(path, dtype, vocab_size, len(words)))
    for split, size in sizes.items():
        shard = folder / f"{split}.bin"
        found = shard.stat().st_size if shard.is_file() else 0
        if not size:
            msg = "{} 里没有词元；请准备更多文本"
            raise DataError(msg.format(shard))
        if found != size:
            msg = "{} 有 {} 字节，meta.json 记录的是 {}；请重新运行 prepare"
            raise DataError(msg.format(shard, found, size))
    if bpe:
        return {"tokenizer": "bpe", "tokenizer_json": text}, vocab_size, str(dtype)
    return {"tokenizer": "char", "vocab": words}, vocab_size, str(dtype)


def in_memory(read) -> tuple[np.ndarray, dict]:
    """即时准备的文本：按字符切分，对 read() 读两遍，词元 id 放在内存中。"""
    chars = Chars(char_vocab(read()))
    dtype = token_dtype(chars.size)
    ids = np.concatenate([chars.encode(text).astype(dtype) for text in read()])
    return ids, {"tokenizer": "char", "vocab": chars.vocab}


def build_datasets(cfg: Config) -> Data:
    """训练集和验证集、由数据决定的尺寸，以及之后推理时需要的信息。"""
    where = Path(cfg.data_path)
    if cfg.data_path and where.is_dir():
        meta, vocab_size, dtype = shard_meta(where)
        train, val = (Shard(where / f"{s}.bin", dtype) for s in ("train", "val"))
    else:
        if not cfg.data_path:
            text = synthetic_text(cfg)
            ids, meta = in_memory(lambda: [text])
        elif where.is_file():
            ids, meta = in_memory(lambda: read_text(where))
        else:
            msg = "{} 处没有文本文件或分片文件夹"
            raise DataError(msg.format(where))
        vocab_size = len(meta["vocab"])
        # 用文本的末尾做验证：随机窗口会与训练文本重叠。
        n_val = max(cfg.seq_len + 1, round(len(ids) * cfg.val_fraction))
        train, val = ids[:-n_val], ids[-n_val:]
    splits = ("训练", train), ("验证", val)
    for split, ids in splits:
        if len(ids) < cfg.seq_len + 1:
            msg = (
                "{} 对 seq_len {} 来说太短：{}集只有 {} 个词元，"
                "不够一个窗口（seq_len + 1）；请使用更多文本或更小的 --seq-len"
            )
            where = cfg.data_path or "合成文本"
            n = len(ids)
            raise DataError(msg.format(where, cfg.seq_len, split, n))
    return Data(
        Windows(train, cfg.seq_len, cfg.seed),
        Windows(val, cfg.seq_len, limit=MAX_VAL_WINDOWS),
        sizes={"vocab_size": vocab_size},
        meta=meta,
    )
