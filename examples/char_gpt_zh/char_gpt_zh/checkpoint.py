"""检查点：原子写入、安全加载，以及精确恢复训练所需的随机数状态。"""

import os
import random
import sys
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """检查点缺失、损坏，或与模型配置不匹配。"""


def save_checkpoint(path: Path, state: dict, keep_previous: bool = False) -> None:
    """先写入临时文件并 fsync，再重命名覆盖目标文件。
    os.replace 是原子操作：崩溃或 kill -9 之后，留下的要么是旧检查点，要么是新检查
    点，绝不会是两者各半。keep_previous 会把旧文件保留为 *.prev.pt，最新文件损坏时
    可以退回使用。
    """
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
    # 让重命名操作本身也持久化到磁盘。
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def previous(path: Path) -> Path:
    """checkpoints/last.pt -> checkpoints/last.prev.pt"""
    return path.with_suffix(".prev" + path.suffix)


def load_checkpoint(path: str | Path) -> dict:
    """把只含张量和普通 Python 值的检查点加载到 CPU 上。"""
    try:
        # weights_only=True 不会执行任何 pickle 代码：加载文件不可能运行恶意程序。
        # 自 PyTorch 2.6 起这是默认值；显式写出是为了表明意图。这也是检查点只保存
        # state_dict 和普通值、从不保存整个模块或 argparse Namespace 的原因。
        # https://pytorch.org/docs/stable/notes/serialization.html#weights-only
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None


def rng_state() -> dict:
    """训练中用到的所有随机数生成器的状态。
    Dropout 从 torch 的随机数生成器取数。恢复训练时还原它，dropout 掩码以及最终权
    重就与不中断的训练逐位相同。
    """
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
    """最新的可读检查点；读不了就退回上一个；都没有则返回 None。"""
    for candidate in (path, previous(path)):
        if candidate.exists():
            try:
                return load_checkpoint(candidate)
            except CheckpointError as e:
                print(f"warning: {e}; trying the previous one", file=sys.stderr)
    return None


def load_model_state(model: torch.nn.Module, state: dict) -> None:
    """load_state_dict，出错时指明哪些键或形状不一致。"""
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
