"""Data: synthetic token sequences by default, or your TSV of label<TAB>text lines
(--data-path).
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from text_classifier.config import Config

PAD, UNK = 0, 1  # ids reserved in every vocabulary
# BPE trains on at most this many characters of training text.
BPE_SAMPLE_CHARS = 1 << 25


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
    # Each rank evaluates every world-th example: no padding repeats, so the summed
    # metrics equal one process's.
    val = Subset(data.val, range(rank, len(data.val), world))
    return train, DataLoader(
        val, batch_size=cfg.batch_size, generator=torch.Generator(), **workers
    )


def bpe_library():
    """Hugging Face tokenizers, an optional extra, imported only when a BPE tokenizer
    is used.
    """
    try:
        import tokenizers
    except ImportError:
        needed = 'tokenizers is needed for --tokenizer bpe: pip install -e ".[bpe]"'
        raise DataError(needed) from None
    return tokenizers


def train_bpe(texts, vocab_size: int, special: list[str]) -> str:
    """Train a byte-level BPE tokenizer (as GPT-2's) on these texts; returns its
    JSON. Nothing is downloaded: it starts from the 256 bytes.
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
    # Feed the trainer lines, not blocks of text: its memory grows with the length of
    # each item (10 MB in two blocks took 830 MB).
    lines = (line for text in texts for line in text.splitlines(keepends=True))
    bpe.train_from_iterator(lines, trainer)
    return bpe.to_str()


class BPE:
    """A trained byte-level BPE tokenizer, rebuilt from its JSON (kept in meta.json's
    folder and in the checkpoint).
    """

    def __init__(self, json_text: str):
        self.tokenizer = bpe_library().Tokenizer.from_str(json_text)
        self.size = self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        # Line by line, 1024 lines at a time in parallel threads (bounded memory); lines
        # split where whole-text encoding would split too.
        lines, ids = text.splitlines(keepends=True), []
        for i in range(0, len(lines), 1024):
            for line in self.tokenizer.encode_batch_fast(lines[i : i + 1024]):
                ids += line.ids
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def synthetic(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences of random length, padded; a fifth of the tokens carry
    the class signal.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    n, T, V = cfg.num_samples, cfg.seq_len, cfg.vocab_size
    tokens = torch.randint(2, V, (n, T), generator=g)
    y = torch.randint(cfg.num_classes, (n,), generator=g)
    signal = 2 + (y.view(n, 1) * 4 + torch.randint(4, (n, T), generator=g)) % (V - 2)
    tokens = torch.where(torch.rand(n, T, generator=g) < 0.2, signal, tokens)
    lengths = torch.randint(T // 2, T + 1, (n, 1), generator=g)
    tokens = tokens.masked_fill(torch.arange(T) >= lengths, PAD)
    return tokens, y


def tokenize(text: str, cfg: Config) -> list[str]:
    return list(text) if cfg.tokenizer == "char" else text.split()


def encoder(meta: dict, cfg: Config):
    """text -> token ids, and the vocabulary size: a trained BPE when the meta holds
    one, else the char or word vocabulary (unknown tokens as UNK).
    """
    if "tokenizer_json" in meta:
        bpe = BPE(meta["tokenizer_json"])
        return bpe.encode, bpe.size
    index = {token: i for i, token in enumerate(meta["vocab"])}
    return lambda text: [index.get(t, UNK) for t in tokenize(text, cfg)], len(index)


def encode(texts: list[str], meta: dict, cfg: Config) -> torch.Tensor:
    """Texts -> a (N, seq_len) tensor of token ids, padded with PAD, unknown tokens
    as UNK.
    """
    ids_of, _ = encoder(meta, cfg)
    rows = torch.full((len(texts), cfg.seq_len), PAD)
    for i, text in enumerate(texts):
        ids = ids_of(text)[: cfg.seq_len]
        rows[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return rows


def bpe_texts(texts: list[str], rows: list[int]):
    """Training texts for BPE, at most BPE_SAMPLE_CHARS characters in all."""
    size = 0
    for i in rows:
        size += len(texts[i])
        if size > BPE_SAMPLE_CHARS:
            return
        yield texts[i]


def read_tsv(path: str) -> tuple[list[str | None], list[str], list[int]]:
    """Labels and texts of label<TAB>text lines (a line without a tab has no label)."""
    if not Path(path).is_file():
        msg = "no data file at {}"
        raise DataError(msg.format(path))
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        msg = "{} is not UTF-8 text ({})"
        raise DataError(msg.format(path, e)) from None
    labels, texts, numbers = [], [], []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            label, tab, text = line.partition("\t")
            labels.append(label if tab else None)
            texts.append(text if tab else line)
            numbers.append(number)  # the file's own line number, blank lines counted
    if not texts:
        msg = "{} has no lines of text"
        raise DataError(msg.format(path))
    return labels, texts, numbers


def build_datasets(cfg: Config) -> Data:
    """Train and validation datasets, the sizes they imply, and what predict needs
    later.
    """
    if not cfg.data_path:
        tokens, y = synthetic(cfg)
        train, val = split(len(tokens), cfg)
        vocab = ["<pad>", "<unk>"] + [f"t{i}" for i in range(2, cfg.vocab_size)]
        meta = {"vocab": vocab}
        classes = [str(i) for i in range(cfg.num_classes)]
    else:
        labels, texts, numbers = read_tsv(cfg.data_path)
        if None in labels:
            line = numbers[labels.index(None)]
            msg = "{}: line {} has no tab; use label<TAB>text"
            raise DataError(msg.format(cfg.data_path, line))
        train, val = split(len(texts), cfg)
        if cfg.tokenizer == "bpe":
            # A byte-level BPE trained on the training split only (it knows every byte,
            # so no UNK); its JSON goes in the checkpoint for predict.
            sample = bpe_texts(texts, train.tolist())
            specials = ["<pad>", "<unk>"]
            meta = {"tokenizer_json": train_bpe(sample, cfg.bpe_vocab_size, specials)}
        else:
            # The vocabulary comes from the training split only; validation words it
            # lacks become UNK.
            seen = {t for i in train.tolist() for t in tokenize(texts[i], cfg)}
            meta = {"vocab": ["<pad>", "<unk>"] + sorted(seen)}
        tokens = encode(texts, meta, cfg)
        classes = sorted(set(labels))
        if len(classes) < 2:
            msg = "{}: every line is of class {!r}"
            raise DataError(msg.format(cfg.data_path, labels[0]))
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels])
    sizes = {"vocab_size": encoder(meta, cfg)[1]}
    meta["classes"] = classes
    sizes["num_classes"] = len(classes)
    return Data(
        TensorDataset(tokens[train], y[train]),
        TensorDataset(tokens[val], y[val]),
        sizes,
        meta,
    )
