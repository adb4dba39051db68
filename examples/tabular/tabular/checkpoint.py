"""Checkpoints: atomic writes, safe loads, and the RNG state that exact resume needs."""

import dataclasses
import json
import math
import os
import random
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tabular.config import Config, ConfigError
from tabular.data import Data
from tabular.model import build_model


class CheckpointError(RuntimeError):
    """A missing, damaged or mismatched checkpoint."""


def save_checkpoint(path: Path, state: dict, keep_previous: bool = False) -> None:
    """Write to a temporary file, fsync it, then rename it over the target."""
    if not all_finite(state):
        text = "not writing {}: the weights or optimizer state hold inf or nan"
        raise FloatingPointError(text.format(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain open() gives the file the mode the umask allows, so the group can read it
    # on a shared file system.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            try:
                os.replace(path, previous(path))
            except FileNotFoundError:
                # another process moved last.pt away first: nothing to keep
                pass
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def all_finite(state) -> bool:
    """True when no floating tensor in the state holds inf or nan (one host read)."""
    checks = []
    todo = [state]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo += item.values()
        elif isinstance(item, (list, tuple)):
            todo += item
        elif isinstance(item, torch.Tensor) and item.is_floating_point():
            checks.append(item.isfinite().all())
    return bool(torch.stack(checks).all()) if checks else True


def previous(path: Path) -> Path:
    """checkpoints/last.pt -> checkpoints/last.prev.pt"""
    return path.with_suffix(".prev" + path.suffix)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint of plain tensors and Python values onto the CPU."""
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol before refusing a file: the refusal
            # below says it in one line
            warnings.simplefilter("ignore", UserWarning)
            # weights_only=True restores only tensors and basic Python types, so a
            # malicious file has far less to work with than with a full unpickler.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as e:
        reason = why_unreadable(path, e)
        text = "{path} is not a readable checkpoint ({reason})"
        raise CheckpointError(text.format(path=path, reason=reason)) from None
    if not isinstance(state, dict):
        text = "{path} holds a {kind}, not a checkpoint dict"
        raise CheckpointError(text.format(path=path, kind=type(state).__name__))
    return state


def why_unreadable(path: str | Path, error: Exception) -> str:
    """Why a file cannot be loaded, in words a user understands: empty, a plain
    pickle, not a torch file, truncated, or refused by weights_only.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        return e.strerror or type(e).__name__
    if not head:
        return "the file is empty"
    # a pickle starts with its protocol byte; torch.save writes a zip file
    if head[:1] == b"\x80":
        return "a plain pickle, not a checkpoint saved by torch.save"
    if head != b"PK\x03\x04":
        return "not a torch checkpoint: torch.save writes a zip file"
    if not is_zip:
        return "the file is truncated: it ends before its zip index"
    text = str(error).strip()
    if "weights_only" in text:
        # torch's refusal is a paragraph: keep only the line that names what was refused
        found = [line for line in text.splitlines() if "WeightsUnpickler" in line]
        cause = found[0].split(":", 1)[1].strip() if found else text.split(". ")[0]
        refused = "not a checkpoint saved by this project: weights_only refused it: {}"
        return refused.format(cause)
    # one line: torch's explanation of a refused pickle runs to a dozen
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def rng_state() -> dict:
    """Every random number generator that training draws from."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(path: Path) -> dict | None:
    """The newest readable checkpoint, falling back to the previous one; None if
    there is none, and an error if both are damaged.
    """
    damaged = []
    for candidate in (path, previous(path)):
        if candidate.exists():
            try:
                return check_progress(load_checkpoint(candidate), candidate)
            except CheckpointError as e:
                msg = "warning: {}"
                print(msg.format(e), file=sys.stderr)
                damaged.append(candidate.name)
    if damaged:
        # Starting over would overwrite best.pt and metrics.jsonl: stop instead, before
        # anything changes.
        msg = (
            "{where}: {names} cannot be loaded and there is no readable fallback; "
            "nothing was changed (--resume PATH picks a file)"
        )
        names = " and ".join(damaged)
        raise CheckpointError(msg.format(where=path.parent, names=names))
    return None


def checkpoint_config(ckpt: dict, path: str) -> tuple[Config, dict]:
    """The config and data description a checkpoint was trained with. A file of
    another model, or one without them, is a CheckpointError, not a TypeError.
    """
    if not isinstance(ckpt.get("config"), dict) or "data" not in ckpt:
        msg = "{} has no config or data: weights only, not a run"
        raise CheckpointError(msg.format(path))
    saved = ckpt["config"]
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(str(k) for k in saved if k not in known)
    if unknown:
        msg = (
            "{} comes from another project: its config has fields this project does "
            "not know: {}"
        )
        raise CheckpointError(msg.format(path, ", ".join(unknown[:5])))
    try:
        cfg = Config(**saved)
    except ConfigError as e:
        msg = "{} is of another model: {}"
        raise CheckpointError(msg.format(path, e)) from None
    except (TypeError, ValueError):
        msg = "{} has a damaged config record: a value of the wrong type"
        raise CheckpointError(msg.format(path)) from None
    check_data(ckpt["data"], cfg, path)
    return cfg, ckpt["data"]


def numbers(value, length: int) -> bool:
    """A list of `length` numbers."""
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, (int, float)) for v in value)
    )


def check_data(meta, cfg: Config, path: str | Path) -> None:
    """What predict, sample and export read from the checkpoint's data facts is there
    and of the right kind; a single class, or a list that does not match the
    model, is refused in one line.
    """
    needs = {
        "features": lambda v: isinstance(v, list) and len(v) == cfg.input_dim,
        "mean": lambda v: numbers(v, cfg.input_dim),
        "std": lambda v: numbers(v, cfg.input_dim),
        "classes": lambda v: isinstance(v, list) and len(v) == cfg.num_classes >= 2,
    }
    for key, fits in needs.items():
        if not isinstance(meta, dict) or key not in meta or not fits(meta[key]):
            msg = (
                "{} lacks what predict and export need: data[{!r}] is missing or does "
                "not match the model"
            )
            raise CheckpointError(msg.format(path, key))


def check_progress(ckpt: dict, path: str | Path) -> dict:
    """The counters a resumed run continues from are whole numbers (best_val_loss a
    number): a damaged or hand-edited checkpoint is refused in one line, and
    --resume auto falls back to last.prev.pt.
    """
    for f in dataclasses.fields(Progress):
        # a missing counter is restore's 'does not fit'
        if f.name not in ckpt:
            continue
        value = ckpt[f.name]
        if f.type is int:
            fits = type(value) is int and value >= 0
            want = "a whole number >= 0"
        else:
            fits = type(value) in (int, float) and not math.isnan(value)
            want = "a number"
        if not fits:
            msg = "{} has a damaged progress record: {} must be {}, got {!r}"
            raise CheckpointError(msg.format(path, f.name, want, value))
    return ckpt


def check_finite(model: nn.Module, path: str | Path) -> nn.Module:
    """Weights with inf or nan would predict nonsense without a word: refused in one
    line.
    """
    if not all_finite(model.state_dict()):
        msg = (
            "{} holds inf or nan weights; its predictions would be meaningless (use an "
            "earlier checkpoint)"
        )
        raise CheckpointError(msg.format(path))
    return model


def weights_of(ckpt: dict, path: str | Path) -> dict:
    """A bare state_dict (torch.save(model.state_dict(), path)) holds the weights
    alone: --init-from can use it.
    """
    if "model" in ckpt:
        return ckpt["model"]
    if ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt
    msg = "{} holds no model weights (no key 'model')"
    raise CheckpointError(msg.format(path))


def load_trained(path: str, raw: bool = False) -> tuple[nn.Module, Config, dict]:
    """The trained model, its config and its data facts, from a checkpoint or from an
    export folder: what predict, sample and export load.
    """
    if Path(path).is_dir():
        return load_export(Path(path))
    ckpt = load_checkpoint(path)
    weights_of(ckpt, path)
    cfg, meta = checkpoint_config(ckpt, path)
    model = build_model(cfg)
    load_model_state(model, ckpt["model"])
    return check_finite(model, path), cfg, meta


def safetensors_torch():
    """safetensors is an optional extra: imported where it is used, and one line when
    it is missing.
    """
    try:
        import safetensors.torch
    except ImportError:
        needed = "safetensors is needed: pip install safetensors"
        raise CheckpointError(needed) from None
    return safetensors.torch


def load_export(folder: Path) -> tuple[nn.Module, Config, dict]:
    """The exported model, its config and its data facts: build_model plus the
    safetensors file reproduce the checkpoint's outputs exactly.
    """
    if not (folder / "config.json").is_file():
        msg = (
            "{} is a folder without config.json, not an export folder: give a "
            "checkpoint file (such as checkpoints/best.pt) or a folder written by "
            "export"
        )
        raise CheckpointError(msg.format(folder))
    load_model = safetensors_torch().load_model
    try:
        saved = {
            "config": json.loads((folder / "config.json").read_text(encoding="utf-8")),
            "data": json.loads((folder / "data.json").read_text(encoding="utf-8")),
        }
        cfg, meta = checkpoint_config(saved, folder)
        model = build_model(cfg)
        load_model(model, str(folder / "model.safetensors"))
        return check_finite(model, folder), cfg, meta
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        msg = "{} is not an export folder ({})"
        raise CheckpointError(msg.format(folder, reason)) from None


def load_model_state(model: torch.nn.Module, state: dict) -> None:
    """load_state_dict, with an error that names the keys or shapes that differ."""
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        texts = [
            ("missing keys {}", missing),
            ("unexpected keys {}", unexpected),
            ("shapes differ (checkpoint vs model): {}", reshaped),
        ]
        parts = [text.format(keys[:5]) for text, keys in texts if keys]
        msg = "the checkpoint was made for a different model config: "
        raise CheckpointError(msg + "; ".join(parts))
    model.load_state_dict(state)


@dataclass
class Progress:
    """Where the run is: everything a checkpoint holds besides the state_dicts."""

    step: int = 0
    epoch: int = 0
    consumed: int = 0
    best_val_loss: float = math.inf
    skipped: int = 0


def capture(parts: dict, progress: Progress, cfg: Config, data: Data) -> dict:
    """The checkpoint: every part's state_dict, the progress, the RNG states, the
    config and the data's metadata.
    """
    return {
        **{name: part.state_dict() for name, part in parts.items()},
        **dataclasses.asdict(progress),
        "rng": rng_state(),
        "config": dataclasses.asdict(cfg),
        "data": data.meta,
    }


def restore(ckpt: dict, parts: dict) -> Progress:
    """Load a checkpoint into the parts; a checkpoint that does not fit is one clear
    CheckpointError.
    """
    try:
        for name, part in parts.items():
            if isinstance(part, nn.Module):
                load_model_state(part, ckpt[name])
            else:
                part.load_state_dict(ckpt[name])
        fields = dataclasses.fields(Progress)
        progress = Progress(**{f.name: ckpt[f.name] for f in fields})
        set_rng_state(ckpt["rng"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        # A missing key, another optimizer or another model config: say so in one line.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        msg = "the checkpoint does not fit this run: {}"
        raise CheckpointError(msg.format(reason)) from None
    resumed = "resumed from step {step} (epoch {epoch})"
    resumed = resumed.format(step=progress.step, epoch=progress.epoch)
    print(resumed, file=sys.stderr)
    return progress


def resume_from(cfg: Config, out_dir: Path) -> dict | None:
    """The checkpoint to resume from, or None for a fresh run; an out_dir that holds
    a run is never overwritten silently.
    """
    if any(p.is_file() for p in (out_dir, *out_dir.parents)):
        msg = "--out-dir {}: a file is in the way of that folder"
        raise ConfigError(msg.format(out_dir))
    if cfg.resume == "auto":
        return latest_checkpoint(out_dir / "checkpoints/last.pt")
    if cfg.resume != "none":
        return check_progress(load_checkpoint(cfg.resume), cfg.resume)
    held = [out_dir / "metrics.jsonl", out_dir / "checkpoints/last.pt"]
    if any(p.exists() for p in held) and not cfg.overwrite:
        msg = (
            "{} already holds a run: continue it with --resume auto, or replace it "
            "with --overwrite"
        )
        raise ConfigError(msg.format(out_dir))
    if cfg.overwrite:
        # Starting over: the old run's checkpoints go too, or the first save would keep
        # its last.pt as this run's fallback.
        for old in (out_dir / "checkpoints").glob("*.pt"):
            old.unlink(missing_ok=True)
    return None
