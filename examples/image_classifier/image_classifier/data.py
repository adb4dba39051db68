"""Data: learnable synthetic images by default, or your image folder or .npz
(--data-path).
"""

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from image_classifier.config import Config

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


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
        raise DataError(
            f"the training split has {len(train)} examples, fewer than {need} (one "
            "batch, and 2 for a standard deviation); use more data or a smaller batch"
        )
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
        raise DataError(
            f"the training split has {len(data.train)} examples, fewer than one "
            f"optimizer step ({batches.step_samples}); lower --batch-size"
        )
    # A generator of its own: making an iterator then draws no number from the global
    # RNG that dropout uses, which exact resume needs.
    train = DataLoader(
        data.train, batch_sampler=batches, generator=torch.Generator(), **workers
    )
    # Each rank evaluates every world-th example: no padding repeats, so the summed
    # metrics equal one process's.
    val = Subset(data.val, range(rank, len(data.val), world))
    return train, DataLoader(val, batch_size=cfg.batch_size, **workers)


def synthetic(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy sine gratings whose orientation is the class (regression: predict their
    frequency).
    """
    g = torch.Generator().manual_seed(cfg.seed)
    n, size = cfg.num_samples, cfg.image_size
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    freq = 2 + 3 * torch.rand(n, 1, 1, generator=g)
    y = torch.randint(cfg.num_classes, (n,), generator=g)
    angle = (math.pi * y / cfg.num_classes).view(n, 1, 1)
    wave = torch.sin(2 * math.pi * freq * (xx * angle.cos() + yy * angle.sin()) + phase)
    colour = torch.rand(n, cfg.in_channels, 1, 1, generator=g) + 0.5
    x = wave.unsqueeze(1) * colour + 0.5 * torch.randn(
        n, cfg.in_channels, size, size, generator=g
    )
    return x, y


def read_images(
    path: str, image_size: int
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Every image under a folder whose sub-folders name the classes, resized and
    scaled to [0, 1].
    """
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading an image folder needs Pillow: pip install pillow"
        ) from None
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("RGB").resize((image_size, image_size))
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        # PIL raises OSError, SyntaxError or ValueError for a truncated or mislabelled
        # file.
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{file} is not a readable image ({e})") from None
        images.append(
            pixels.view(image_size, image_size, 3).permute(2, 0, 1).float() / 255
        )
    labels = [file.parent.name for file in files]
    return torch.stack(images), labels, [str(file) for file in files]


def read_npz(path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (N, C, H, W) and, if present, y (N) from a NumPy .npz file."""
    try:
        import numpy as np
    except ImportError:
        raise DataError("reading a .npz file needs NumPy: pip install numpy") from None
    # A .npy, a CSV, a damaged zip or an object array (a pickle, refused): one line
    # naming the file.
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("it is not a zip of arrays; save x and y with np.savez")
        with np.load(path) as arrays:
            arrays = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a .npz file of arrays x and y: {e}") from None
    if "x" not in arrays:
        raise DataError(f"{path} has no array named x (found: {', '.join(arrays)})")
    try:
        x = torch.from_numpy(arrays["x"]).float()
        y = torch.from_numpy(arrays["y"]) if "y" in arrays else None
    except TypeError as e:
        raise DataError(f"{path}: {e}") from None
    if x.dim() != 4:
        raise DataError(f"{path}: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if y is not None and y.shape != (len(x),):
        raise DataError(
            f"{path}: y must have shape ({len(x)},) like x, got {tuple(y.shape)}"
        )
    for name, t in (("x", x), ("y", y)):
        if t is not None and t.is_floating_point() and not t.isfinite().all():
            i = int((~t.isfinite()).reshape(len(t), -1).any(1).nonzero()[0])
            raise DataError(f"{path}: {name}[{i}] holds nan or inf")
    return x, y


def load_images(
    path: str, cfg: Config
) -> tuple[torch.Tensor, list | torch.Tensor | None]:
    """Images and their labels from a .npz file or a folder of class sub-folders."""
    if not Path(path).exists():
        raise DataError(f"no data file or folder at {path}")
    if Path(path).is_dir():
        x, labels, _ = read_images(path, cfg.image_size)
        return x, labels
    return read_npz(path)


def build_datasets(cfg: Config) -> Data:
    """Train and validation datasets, the sizes they imply, and what predict needs
    later.
    """
    if cfg.data_path:
        x, labels = load_images(cfg.data_path, cfg)
        if labels is None:
            raise DataError(
                f"{cfg.data_path} has no labels (an array y, or class folders)"
            )
        labels = [
            str(v) for v in (labels.tolist() if torch.is_tensor(labels) else labels)
        ]
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise DataError(f"{cfg.data_path}: every image is of class {labels[0]!r}")
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels])
    else:
        x, y = synthetic(cfg)
        classes = [str(i) for i in range(cfg.num_classes)]
    train, val = split(len(x), cfg)
    # Per-channel mean and std from the training split only, saved for predict.
    mean = x[train].mean(dim=(0, 2, 3))
    std = x[train].std(dim=(0, 2, 3)).clamp_min(1e-6)
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    meta = {"mean": mean.tolist(), "std": std.tolist()}
    sizes = {"in_channels": x.shape[1], "image_size": x.shape[-1]}
    meta["classes"] = classes
    sizes["num_classes"] = len(classes)
    return Data(
        TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]), sizes, meta
    )


def encode(meta: dict, x: torch.Tensor) -> torch.Tensor:
    """Scale raw images as in training, with the statistics from the checkpoint."""
    if x.shape[1] != len(meta["mean"]):
        raise DataError(
            f"the images have {x.shape[1]} channels; the model was trained on "
            f"{len(meta['mean'])}"
        )
    mean, std = torch.tensor(meta["mean"]), torch.tensor(meta["std"])
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
