"""数据：默认是合成语料，也可以用你的纯文本文件（--data-path），按字符建模。"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from char_gpt_zh.config import Config


class DataError(ValueError):
    """无法使用的数据：文件缺失或无法读取，或者文本太短，凑不满一个批次的窗口。"""


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
        # 这一轮的顺序只取决于（种子，轮）
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        for start in range(self.start, self.usable, self.batch_size * self.world):
            mine = start + self.rank * self.batch_size
            yield order[mine : mine + self.batch_size].tolist()


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
        raise DataError(
            f"the training split has {len(data.train)} examples, fewer than one "
            f"optimizer step ({batches.step_samples}); lower --batch-size"
        )
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


class Windows(Dataset):
    """每个长为 seq_len 的字符窗口，与右移一位的同一窗口配对：
    即下一个字符的预测目标。
    """

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
        try:
            text = Path(cfg.data_path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{cfg.data_path} is not UTF-8 text ({e})") from None
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
