"""Data: learnable synthetic images by default, or your image folder or .npz
(--data-path).
"""

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from image_classifier.config import Config

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
STATS_IMAGES = 500  # training images decoded to estimate the normalization
PLAIN = {"mean": [0.0] * 3, "std": [1.0] * 3}  # no normalization: pixels in [0, 1]


class DataError(ValueError):
    """Data that cannot be used: a missing file, a non-numeric column, too few rows."""

    def __init__(self, message: str):
        if message.startswith("Caught DataError"):
            # An error raised in a DataLoader worker comes back wrapped in its
            # traceback: keep its last line, the message.
            message = message.rstrip().rsplit("DataError: ", 1)[-1]
        super().__init__(message)


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
        # Each index carries its epoch (key = epoch * n + index). Persistent workers
        # hold their own copy of the data set, so the epoch must travel with the index,
        # not in an attribute.
        order += self.epoch * self.n
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
    # Each rank evaluates every world-th example: no padding repeats, so the summed
    # metrics equal one process's.
    val = Subset(data.val, range(rank, len(data.val), world))
    return train, DataLoader(
        val, batch_size=cfg.batch_size, generator=torch.Generator(), **workers
    )


class KeyedTensors(TensorDataset):
    """In-memory tensors that take GlobalBatches' keys (epoch * len + index) as the
    image folder does.
    """

    def __getitem__(self, key: int) -> tuple[torch.Tensor, ...]:
        return super().__getitem__(key % len(self))


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


def pillow():
    """Pillow's Image module, or one line naming the pip install."""
    try:
        from PIL import Image
    except ImportError:
        needed = "reading an image folder needs Pillow: pip install pillow"
        raise DataError(needed) from None
    return Image


def image_files(folder: Path) -> list[Path]:
    """Every image file under a folder, in a fixed (sorted) order: paths only,
    nothing decoded.
    """
    pillow()
    files = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        msg = "no images ({}) under {}"
        raise DataError(msg.format(suffixes, folder))
    return sorted(files)


def index_classes(root: Path) -> tuple[list[Path], list[str]]:
    """Index a folder of class sub-folders: the path and class of each image, none
    decoded.
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
    if not folders:
        msg = "{} has no class folders (one sub-folder per class)"
        raise DataError(msg.format(root))
    files, labels = [], []
    for folder in folders:
        found = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            msg = "the class folder {} holds no images"
            raise DataError(msg.format(folder))
        files += sorted(found)
        labels += [folder.name] * len(found)
    return files, labels


def random_box(w: int, h: int, scale: float, ratio: float, left: float, top: float):
    """A crop of 8-100% of the area with an aspect ratio in [3/4, 4/3] (as in
    Inception training), clamped to the image; from four uniform draws.
    """
    area = w * h * (0.08 + 0.92 * scale)
    aspect = math.exp(math.log(3 / 4) + math.log(16 / 9) * ratio)
    cw, ch = min(w, math.sqrt(area * aspect)), min(h, math.sqrt(area / aspect))
    x, y = left * (w - cw), top * (h - ch)
    return x, y, x + cw, y + ch


def center_box(w: int, h: int) -> tuple[float, float, float, float]:
    """The largest centred square: resizing it is resize-then-center-crop in one
    step.
    """
    side = min(w, h)
    return (w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2


class ImageFolder(Dataset):
    """Images decoded on demand, in the DataLoader's workers: the data set holds
    paths, never pixels.
    """

    def __init__(self, files, labels, cfg: Config, meta: dict, augment: bool = False):
        check_channels(3, meta)
        # One NumPy array of bytes, not a list of str: forked workers reading a list
        # touch its refcounts and copy its pages, so a large index would grow every
        # worker's memory.
        self.files = np.array([os.fsencode(f) for f in files])
        self.labels, self.augment = labels, augment
        self.size, self.seed = cfg.image_size, cfg.seed
        self.mean = torch.tensor(meta["mean"]).view(-1, 1, 1)
        self.std = torch.tensor(meta["std"]).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """key = epoch * len + index (from GlobalBatches): the image is key % len,
        and every random choice is drawn from (seed, key), so a resumed run or any
        worker draws the same crop and flip.
        """
        i, size = key % len(self.files), self.size
        file = os.fsdecode(self.files[i])
        # A generator per sample: no global RNG state that workers or a resume would
        # have to share.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + key)
        *draw, flip = torch.rand(5, generator=g).tolist()
        Image = pillow()
        try:
            with Image.open(file) as image:
                image, (w, h) = image.convert("RGB"), image.size
                box = random_box(w, h, *draw) if self.augment else center_box(w, h)
                image = image.resize((size, size), Image.Resampling.BILINEAR, box)
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        # PIL raises OSError, SyntaxError or ValueError for a truncated or mislabelled
        # file, and DecompressionBombError for an image of over 179 million pixels.
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            msg = "{} is not a readable image ({})"
            raise DataError(msg.format(file, e)) from None
        x = pixels.view(size, size, 3).permute(2, 0, 1).float() / 255
        if self.augment and flip < 0.5:
            x = x.flip(-1)
        return (x - self.mean) / self.std, self.labels[i]


def channel_stats(files: list[Path], cfg: Config) -> dict:
    """Per-channel mean and std of a bounded, seeded sample of training images
    (validation transform), saved for predict.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    sample = [files[i] for i in torch.randperm(len(files), generator=g)[:STATS_IMAGES]]
    plain = ImageFolder(sample, torch.zeros(len(sample)), cfg, PLAIN)
    sums = torch.zeros(2, 3, dtype=torch.float64)
    for x, _ in DataLoader(plain, batch_size=64, num_workers=cfg.num_workers):
        x = x.double()
        sums += torch.stack([x.mean((2, 3)), x.square().mean((2, 3))]).sum(1)
    mean, square = sums / len(sample)
    std = (square - mean.square()).clamp_min(1e-12).sqrt()
    return {"mean": mean.tolist(), "std": std.tolist()}


def image_folders(cfg: Config) -> Data:
    """Class folders, split by the seed or given as train/ and val/, indexed and not
    loaded.
    """
    root = Path(cfg.data_path)
    pillow()
    layout = (root / "train").is_dir() and (root / "val").is_dir()
    files, labels = index_classes(root / "train" if layout else root)
    classes = sorted(set(labels))
    if len(classes) < 2:
        msg = "{}: every image is of class {!r}"
        raise DataError(msg.format(cfg.data_path, classes[0]))
    if layout:
        val_files, val_labels = index_classes(root / "val")
        if unknown := sorted(set(val_labels) - set(classes)):
            msg = "{} has classes not in train/: {}"
            raise DataError(msg.format(root / "val", unknown))
    else:
        train, val = (part.tolist() for part in split(len(files), cfg))
        val_files, val_labels = [files[i] for i in val], [labels[i] for i in val]
        files, labels = [files[i] for i in train], [labels[i] for i in train]
    index = {c: i for i, c in enumerate(classes)}
    y, val_y = (torch.tensor([index[c] for c in ls]) for ls in (labels, val_labels))
    meta = {**channel_stats(files, cfg), "classes": classes}
    sizes = dict(in_channels=3, image_size=cfg.image_size, num_classes=len(classes))
    return Data(
        ImageFolder(files, y, cfg, meta, augment=cfg.augment),
        ImageFolder(val_files, val_y, cfg, meta),
        sizes,
        meta,
    )


def read_npz(path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (N, C, H, W) and, if present, y (N) from a NumPy .npz file."""
    # A .npy, a CSV, a damaged zip or an object array (a pickle, refused): one line
    # naming the file.
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("it is not a zip of arrays; save x and y with np.savez")
        with np.load(path) as arrays:
            arrays = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = "{} is not a .npz file of arrays x and y: {}"
        raise DataError(msg.format(path, e)) from None
    if "x" not in arrays:
        msg = "{} has no array named x (found: {})"
        raise DataError(msg.format(path, ", ".join(arrays)))
    try:
        x = torch.from_numpy(arrays["x"]).float()
        y = torch.from_numpy(arrays["y"]) if "y" in arrays else None
    except TypeError as e:
        raise DataError(f"{path}: {e}") from None
    if x.dim() != 4:
        msg = "{}: x must have shape (N, C, H, W), got {}"
        raise DataError(msg.format(path, tuple(x.shape)))
    if y is not None and y.shape != (len(x),):
        msg = "{}: y must have shape ({},) like x, got {}"
        raise DataError(msg.format(path, len(x), tuple(y.shape)))
    for name, t in (("x", x), ("y", y)):
        if t is not None and t.is_floating_point() and not t.isfinite().all():
            i = int((~t.isfinite()).reshape(len(t), -1).any(1).nonzero()[0])
            msg = "{}: {}[{}] holds nan or inf"
            raise DataError(msg.format(path, name, i))
    return x, y


def build_datasets(cfg: Config) -> Data:
    """Train and validation datasets, the sizes they imply, and what predict needs
    later.
    """
    if cfg.data_path and not Path(cfg.data_path).exists():
        msg = "no data file or folder at {}"
        raise DataError(msg.format(cfg.data_path))
    if cfg.data_path and Path(cfg.data_path).is_dir():
        return image_folders(cfg)
    if cfg.data_path:
        x, labels = read_npz(cfg.data_path)
        if labels is None:
            msg = "{} has no labels (an array y, or class folders)"
            raise DataError(msg.format(cfg.data_path))
        labels = [str(v) for v in labels.tolist()]
        classes = sorted(set(labels))
        if len(classes) < 2:
            msg = "{}: every image is of class {!r}"
            raise DataError(msg.format(cfg.data_path, labels[0]))
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
        KeyedTensors(x[train], y[train]), KeyedTensors(x[val], y[val]), sizes, meta
    )


def check_channels(channels: int, meta: dict) -> None:
    if channels != len(meta["mean"]):
        msg = "the images have {} channels; the model was trained on {}"
        raise DataError(msg.format(channels, len(meta["mean"])))


def encode(meta: dict, x: torch.Tensor) -> torch.Tensor:
    """Scale raw images as in training, with the statistics from the checkpoint."""
    check_channels(x.shape[1], meta)
    mean, std = torch.tensor(meta["mean"]), torch.tensor(meta["std"])
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
