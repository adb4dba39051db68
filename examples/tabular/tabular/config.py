"""Training configuration: one dataclass; every field is a --flag and a key of a TOML
file.
"""

import argparse
import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path


class ConfigError(ValueError):
    """A bad config value or name; the CLI prints it as one line and exits with code
    2.
    """


# The allowed range of each field, checked when a Config is made: (what the message
# says, the test). A probability outside [0, 1] or a size of 0 would fail later, deep
# inside PyTorch, with a traceback.
RANGES = {
    "batch_size": (">= 1", lambda v: v >= 1),
    "grad_accum_steps": (">= 1", lambda v: v >= 1),
    "log_every": (">= 1", lambda v: v >= 1),
    "eval_every": (">= 1", lambda v: v >= 1),
    "save_every": (">= 1", lambda v: v >= 1),
    "input_dim": (">= 1", lambda v: v >= 1),
    "hidden_dims": (">= 1", lambda v: v >= 1),
    "num_samples": (">= 1", lambda v: v >= 1),
    "max_steps": (">= 0", lambda v: v >= 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "grad_clip": (">= 0", lambda v: v >= 0),
    "min_lr": (">= 0", lambda v: v >= 0),
    "lr": ("> 0", lambda v: v > 0),
    "num_classes": (">= 2", lambda v: v >= 2),
    "warmup_steps": (">= -1", lambda v: v >= -1),
    "dropout": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
    "betas": ("in [0, 1)", lambda v: 0 <= v < 1),
    "val_fraction": ("in (0, 1)", lambda v: 0 < v < 1),
    "seed": ("in [0, 2**32)", lambda v: 0 <= v < 2**32),
    "num_workers": ("between 0 and 256", lambda v: 0 <= v <= 256),
}
# 4 billion numbers: 16 GB in fp32, before gradients and optimizer state.
MAX_NUMBERS = 2**32


@dataclass
class Config:
    epochs: int = 5
    max_steps: int = 0
    batch_size: int = 64
    grad_accum_steps: int = 1
    lr: float = 0.001
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/default"
    log_every: int = 10
    eval_every: int = 100
    save_every: int = 100
    resume: str = "none"
    init_from: str = ""
    data_path: str = ""
    val_fraction: float = 0.1
    num_workers: int = 0
    overwrite: bool = False
    target: str = "label"
    input_dim: int = 20
    hidden_dims: list[int] = field(default_factory=lambda: [128, 128])
    dropout: float = 0.1
    num_samples: int = 4096
    num_classes: int = 4
    label_smoothing: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = -1
    min_lr: float = 0.0

    def __post_init__(self):
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, list) else [value]
            if f.name in RANGES and not all(RANGES[f.name][1](v) for v in values):
                want, text = RANGES[f.name][0], "{name} must be {want}, got {value}"
                problems.append(text.format(name=f.name, want=want, value=value))
            elif any(isinstance(v, float) and not math.isfinite(v) for v in values):
                text = "{name} must be a finite number, got {value}"
                problems.append(text.format(name=f.name, value=value))
        if self.max_steps == 0 and self.epochs < 1:
            text = "epochs must be >= 1 when max_steps is 0, got {}"
            problems.append(text.format(self.epochs))
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            text = "device must be auto, cpu, cuda, cuda:N or mps, got {!r}"
            problems.append(text.format(self.device))
        if not self.out_dir.strip():
            problems.append("out_dir must name a folder, got an empty string")
        if len(self.betas) != 2:
            text = "betas must be two numbers, got {}"
            problems.append(text.format(self.betas))
        params, numbers = self.footprint() if not problems else (0, 0)
        smaller = "; use smaller sizes"
        if params > MAX_NUMBERS:
            text = "the model would have ~{:.2g} parameters, more than memory holds"
            problems.append(text.format(params) + smaller)
        if numbers > MAX_NUMBERS and not self.data_path:
            text = "synthetic data would hold ~{:.2g} numbers, more than memory holds"
            problems.append(text.format(numbers) + smaller)
        if problems:
            raise ConfigError("; ".join(problems))

    def footprint(self) -> tuple[int, int]:
        """Rough counts of the model's parameters and of the numbers in the synthetic
        data, so that an absurd size is a config error and not an out-of-memory
        crash minutes later.
        """
        widths = [self.input_dim, *self.hidden_dims, self.num_classes]
        params = sum(a * b for a, b in pairwise(widths))
        return params, self.num_samples * self.input_dim


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# The help of each field, shown by --help and written above it in configs/default.toml.
HELP = {
    "epochs": "passes over the training set (max_steps wins when > 0)",
    "max_steps": "optimizer steps to take; 0 = use epochs",
    "batch_size": "examples per micro-batch",
    "grad_accum_steps": "micro-batches per optimizer step",
    "lr": "peak learning rate",
    "weight_decay": "decoupled weight decay (not on biases or norms)",
    "grad_clip": "clip the global gradient norm to this; 0 = off",
    "seed": "seeds the data split, the shuffle and the initial weights",
    "device": "auto (cuda, then mps, then cpu), cpu, cuda or mps",
    "out_dir": "metrics.jsonl and checkpoints/ go here",
    "log_every": "log the training loss every this many steps",
    "eval_every": "evaluate on the validation split every this many steps",
    "save_every": "write checkpoints/last.pt every this many steps",
    "resume": "none, auto (out_dir/checkpoints/last.pt) or a path",
    "init_from": "load model weights only from this checkpoint (fine-tune)",
    "data_path": "your data file or folder; empty = synthetic data",
    "val_fraction": "share of the data held out for validation",
    "num_workers": "DataLoader worker processes; 0 = load in the main one",
    "overwrite": "start over in an out_dir that already holds a run",
    "target": "name of the target column in your CSV",
    "input_dim": "features per example (inferred from your CSV)",
    "hidden_dims": "width of each hidden layer",
    "dropout": "dropout after each hidden layer",
    "num_samples": "size of the synthetic data set",
    "num_classes": "number of classes (inferred from your data)",
    "label_smoothing": "cross-entropy label smoothing (Szegedy et al.)",
    "betas": "Adam's beta1, beta2",
    "warmup_steps": "linear warm-up steps; -1 = 5% of the run",
    "min_lr": "learning rate at the end",
}


def _fits(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float and isinstance(value, int):
        return abs(value) < 1e308  # float() of a larger int overflows
    return isinstance(value, kind)


def _coerce(name: str, value: object) -> object:
    """Check a value read from a TOML file against the field's type."""
    kind = FIELDS[name].type
    if hasattr(kind, "__args__"):  # a list[int] or list[float] field
        item = kind.__args__[0]
        if isinstance(value, list) and all(_fits(v, item) for v in value):
            return [item(v) for v in value]
    elif _fits(value, kind):
        return kind(value)
    message = "{name} must be {kind}, got {value!r}"
    kind = str(kind).removeprefix("<class '").removesuffix("'>")  # int, list[int]
    raise ConfigError(message.format(name=name, kind=kind, value=value))


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    maybe = "(did you mean {!r}?)"
    hint = " " + maybe.format(close[0]) if close else ""
    message = "unknown field {name!r}{hint}; valid fields: {fields}"
    return message.format(name=name, hint=hint, fields=", ".join(FIELDS))


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit code 2, like the
    config's; argparse's own prints its whole usage first.
    """

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, add_help=False, **kwargs)
        self.add_argument("-h", "--help", action="help", help="show this help and exit")

    def error(self, message: str):
        text = "error: {} (see --help)"
        self.stop(text.format(message.removeprefix("argument ")))

    def stop(self, message: str):
        """Exit with code 2 and this message on one line: a value the user typed may
        hold a line break.
        """
        self.exit(2, " ".join(message.splitlines()) + "\n")


# What a flag value that does not parse is told, by the field's type.
NOT_A = {int: "{!r} is not a whole number", float: "{!r} is not a number"}


def flag_type(kind: type):
    """argparse's type for a field of this type: the value, or a one-line reason why
    not.
    """

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(NOT_A[kind].format(text)) from None

    return parse


def out_folder(text: str) -> Path:
    """An output folder given on the command line: an empty name, or an existing file
    on the way to it, is a mistake in the command, refused in one line by
    argparse.
    """
    path = Path(text)
    on_the_way = (path, *path.parents)
    if not text.strip() or any(p.exists() and not p.is_dir() for p in on_the_way):
        msg = (
            "{!r} cannot be a folder to write: it is empty, or an existing file is on "
            "the way"
        )
        raise argparse.ArgumentTypeError(msg.format(text))
    return path


def load_config(argv: list[str] | None = None) -> Config:
    """Build a Config from an optional --config TOML file, then --field flags on top."""
    parser = Parser(
        description="Train the model. Flags win over the --config file.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="a TOML file of field = value lines")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        text = HELP[f.name].replace("%", "%%")  # argparse formats help texts with %
        if f.type is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text
            )
        elif hasattr(f.type, "__args__"):
            kind = flag_type(f.type.__args__[0])
            parser.add_argument(flag, dest=f.name, type=kind, nargs="+", help=text)
        else:
            kind = flag_type(f.type)
            parser.add_argument(flag, dest=f.name, type=kind, help=text)
    args, unknown = parser.parse_known_args(argv)
    try:
        for arg in unknown:
            if not arg.startswith("--"):
                message = "unexpected argument {!r}"
                raise ConfigError(message.format(arg))
            raise ConfigError(_unknown(arg[2:].split("=")[0].replace("-", "_")))
        values = {}
        path = vars(args).pop("config", None)
        if path is not None:
            # A missing file, one not in UTF-8 or not TOML: one line that names it.
            try:
                with open(path, "rb") as f:
                    table = tomllib.load(f)
            except UnicodeDecodeError:
                msg = "{}: not UTF-8 text"
                raise ConfigError(msg.format(path)) from None
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: {e}") from None
            for name, value in table.items():
                if name not in FIELDS:
                    raise ConfigError(f"{path}: " + _unknown(name))
                try:
                    values[name] = _coerce(name, value)
                except ConfigError as e:
                    raise ConfigError(f"{path}: {e}") from None
        values.update(vars(args))
        return Config(**values)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as e:
        message = "error: {}"
        parser.stop(message.format(e))
