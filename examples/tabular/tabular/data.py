"""Data: a learnable synthetic table by default, or your CSV file (--data-path)."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from tabular.config import Config


class DataError(ValueError):
    """Data that cannot be used: a missing file, a non-numeric column, too few rows."""


@dataclass
class Data:
    train: Dataset
    val: Dataset
    sizes: dict  # Config fields the data decides
    meta: dict  # plain values for predict or sample


def split(n: int, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The split depends on the seed alone, so a resumed run sees the same split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(1, round(n * cfg.val_fraction))
    train, val = perm[n_val:], perm[:n_val]
    need = max(cfg.batch_size, 2)  # the std of one example is nan
    if len(train) < need:
        msg = (
            "the training split has {n} examples, fewer than {need} (one batch, and 2 "
            "for a standard deviation); use more data or a smaller batch"
        )
        raise DataError(msg.format(n=len(train), need=need))
    return train, val


class GlobalBatches(Sampler[list[int]]):
    """Micro-batches of one rank, cut from one global order that depends only on
    (seed, epoch).
    """

    def __init__(self, n: int, cfg: Config, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank = n, cfg.seed, rank
        self.batch_size, self.world = cfg.batch_size, world
        # An epoch holds whole optimizer steps; the few samples left over wait for the
        # next epoch's shuffle.
        self.step_samples = cfg.batch_size * cfg.grad_accum_steps * world
        self.usable = n // self.step_samples * self.step_samples
        self.epoch, self.start = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.usable // self.step_samples

    def set_position(self, epoch: int, start: int) -> None:
        """The next pass starts at sample `start` of epoch `epoch` (counted over all
        ranks).
        """
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return (self.usable - self.start) // (self.batch_size * self.world)

    def __iter__(self):
        # the epoch's order depends on (seed, epoch) alone
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        for start in range(self.start, self.usable, self.batch_size * self.world):
            mine = start + self.rank * self.batch_size
            yield order[mine : mine + self.batch_size].tolist()


def micro_batches(loader: DataLoader, epoch: int, consumed: int):
    """Yield (epoch, samples consumed, batch) forever, starting at sample `consumed`
    of `epoch`.
    """
    sampler = loader.batch_sampler
    while True:
        sampler.set_position(epoch, consumed)
        for batch in loader:
            consumed += sampler.batch_size * sampler.world
            yield epoch, consumed, batch
        epoch, consumed = epoch + 1, 0


def loaders(data: Data, cfg: Config, device, rank: int, world: int) -> tuple:
    """The training loader takes batches from GlobalBatches; validation is split
    between the ranks.
    """
    # Pinned host memory makes non_blocking copies asynchronous; worker processes decode
    # while the GPU trains.
    workers = dict(
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    batches = GlobalBatches(len(data.train), cfg, rank, world)
    if batches.steps_per_epoch == 0:
        msg = (
            "the training split has {n} examples, fewer than one optimizer step "
            "({need}); lower --batch-size"
        )
        raise DataError(msg.format(n=len(data.train), need=batches.step_samples))
    # A generator of its own: making an iterator then draws no number from the global
    # RNG that dropout uses, which exact resume needs.
    train = DataLoader(
        data.train, batch_sampler=batches, generator=torch.Generator(), **workers
    )
    return train, DataLoader(
        data.val, batch_size=cfg.batch_size, generator=torch.Generator(), **workers
    )


def synthetic(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features and targets from a fixed random two-layer teacher network."""
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.num_samples, cfg.input_dim, generator=g)
    w1 = torch.randn(cfg.input_dim, 64, generator=g) / cfg.input_dim**0.5
    w2 = torch.randn(64, cfg.num_classes, generator=g)
    return x, (torch.tanh(x @ w1) @ w2).argmax(dim=1)


FLOAT32_MAX = torch.finfo(torch.float32).max


def number(path: str, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    # float() accepts "nan" and "inf", and 1e39 is finite only in float64, not in the
    # float32 tensors: any of them would make the loss nan at the first step.
    if not abs(value) <= FLOAT32_MAX:
        msg = "{}:{}: column {!r} is not a finite float32 number: {!r}"
        raise DataError(msg.format(path, line, column, text))
    return value


def read_csv(
    path: str, target: str, labelled: bool = False
) -> tuple[list[str], torch.Tensor, list[str] | None]:
    """Feature names, features (N, D), and the target column as text, or None."""
    if Path(path).is_dir():
        msg = "{} is a folder; --data-path names a CSV file"
        raise DataError(msg.format(path))
    if not Path(path).is_file():
        msg = "no data file at {}"
        raise DataError(msg.format(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except UnicodeDecodeError as e:
        # Latin-1, binary or NUL bytes: one line naming the file, not a
        # UnicodeDecodeError.
        msg = "{} is not a UTF-8 CSV file ({})"
        raise DataError(msg.format(path, e)) from None
    except csv.Error as e:
        msg = "{} cannot be read as CSV ({})"
        raise DataError(msg.format(path, e)) from None
    if not rows:
        msg = "{} has no data rows"
        raise DataError(msg.format(path))
    if twice := sorted({c for c in columns if columns.count(c) > 1}):
        msg = "{}: the header names a column twice: {}; rename one of them"
        raise DataError(msg.format(path, ", ".join(twice)))
    for line, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            # csv.DictReader files extra fields under None and fills missing ones with
            # None.
            msg = "{}:{}: the row's fields do not match the header's {} columns"
            raise DataError(msg.format(path, line, len(columns)))
    features = [c for c in columns if c != target]
    # Training needs the target column and at least one feature: checked before any cell
    # is converted, so that a missing target is named as such.
    if labelled and target not in columns:
        msg = "{} has no target column {!r} (columns: {}); name it with --target"
        raise DataError(msg.format(path, target, ", ".join(columns)))
    if labelled and not features:
        msg = "{} has no feature columns besides the target {!r}"
        raise DataError(msg.format(path, target))
    labels = [row[target] for row in rows] if target in columns else None
    if labelled and (empty := [i for i, v in enumerate(labels, 2) if not v.strip()]):
        msg = "{}:{}: the target {!r} is empty"
        raise DataError(msg.format(path, empty[0], target))
    x = [
        [number(path, line, c, row[c]) for c in features]
        for line, row in enumerate(rows, start=2)
    ]
    return features, torch.tensor(x), labels


def build_datasets(cfg: Config) -> Data:
    """Train and validation datasets, the sizes they imply, and what predict needs
    later.
    """
    if cfg.data_path:
        features, x, labels = read_csv(cfg.data_path, cfg.target, labelled=True)
        classes = sorted(set(labels))
        if len(classes) < 2:
            msg = "{}: every row is of class {!r}"
            raise DataError(msg.format(cfg.data_path, labels[0]))
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels])
    else:
        features = [f"x{i}" for i in range(cfg.input_dim)]
        x, y = synthetic(cfg)
        classes = [str(i) for i in range(cfg.num_classes)]
    train, val = split(len(x), cfg)
    # Scale features with training-split statistics only: the validation data stays
    # unseen.
    mean, std = x[train].mean(dim=0), x[train].std(dim=0).clamp_min(1e-6)
    x = (x - mean) / std
    meta = {"features": features, "mean": mean.tolist(), "std": std.tolist()}
    meta["classes"] = classes
    sizes = {"input_dim": x.shape[1], "num_classes": len(classes)}
    return Data(
        TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]), sizes, meta
    )


def encode(meta: dict, x: torch.Tensor) -> torch.Tensor:
    """Scale raw features as in training, with the statistics from the checkpoint."""
    return (x - torch.tensor(meta["mean"])) / torch.tensor(meta["std"])
