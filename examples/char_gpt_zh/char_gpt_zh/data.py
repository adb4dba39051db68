"""数据：默认是合成语料，也可以用你的纯文本文件（--data-path），按字符建模。"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from char_gpt_zh.config import Config


class DataError(ValueError):
    """无法使用的数据：文件缺失、某列不是数字、行数太少等。"""


@dataclass
class Data:
    train: Dataset
    val: Dataset
    sizes: dict  # 由数据决定的 Config 字段
    meta: dict  # 推理或采样也需要的普通值


def synthetic_text(cfg: Config) -> str:
    """由 40 个虚构单词上的随机马尔可夫链生成的句子。
    文本在两个尺度上有结构：单词的拼写，以及哪个词可以跟在哪个词后面，所以损失可以
    降到远低于字符的一元熵。
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


class Windows(Dataset):
    """每个长为 seq_len 的字符窗口，与右移一位的同一窗口配对：即下一个字符的预测目标。"""

    def __init__(self, ids: torch.Tensor, seq_len: int, stride: int = 1):
        self.ids, self.seq_len, self.stride = ids, seq_len, stride

    def __len__(self) -> int:
        return (len(self.ids) - self.seq_len - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.stride
        chunk = self.ids[start : start + self.seq_len + 1]
        return chunk[:-1], chunk[1:]


def build_datasets(cfg: Config) -> Data:
    """训练集和验证集、由数据决定的尺寸，以及之后推理时需要的信息。"""
    if cfg.data_path:
        if not Path(cfg.data_path).is_file():
            raise DataError(f"no data file at {cfg.data_path}")
        text = Path(cfg.data_path).read_text(encoding="utf-8")
    else:
        text = synthetic_text(cfg)
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    # 用文本的末尾做验证：随机窗口会与训练文本重叠。
    n_val = max(cfg.seq_len + 1, round(len(ids) * cfg.val_fraction))
    train, val = ids[:-n_val], ids[-n_val:]
    if len(train) < cfg.seq_len + cfg.batch_size:
        raise DataError(
            f"the text has {len(ids)} characters: too short for seq_len "
            f"{cfg.seq_len} and batch_size {cfg.batch_size}; use a longer text"
        )
    return Data(
        Windows(train, cfg.seq_len),
        Windows(val, cfg.seq_len, stride=cfg.seq_len),
        sizes={"vocab_size": len(vocab)},
        meta={"vocab": vocab},
    )
