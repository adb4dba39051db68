"""Checkpoints: atomic writes, safe loads, and the RNG state that exact resume needs."""

import os
import random
import sys
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A missing, damaged or mismatched checkpoint."""


def save_checkpoint(path: Path, state: dict, keep_previous: bool = False) -> None:
    """Write to a temporary file, fsync it, then rename it over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous(path))
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


def previous(path: Path) -> Path:
    """checkpoints/last.pt -> checkpoints/last.prev.pt"""
    return path.with_suffix(".prev" + path.suffix)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint of plain tensors and Python values onto the CPU."""
    try:
        # weights_only=True never runs pickled code: loading a file cannot execute
        # anything.
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None


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
    there is none.
    """
    for candidate in (path, previous(path)):
        if candidate.exists():
            try:
                return load_checkpoint(candidate)
            except CheckpointError as e:
                print(f"warning: {e}; trying the previous one", file=sys.stderr)
    return None


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
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if reshaped:
            parts.append(f"shapes differ (checkpoint vs model): {reshaped[:5]}")
        raise CheckpointError(
            "the checkpoint was made for a different model config: " + "; ".join(parts)
        )
    model.load_state_dict(state)
