"""检查点：原子写入、安全加载，以及精确恢复训练所需的随机数状态。"""

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

from char_gpt_zh.config import Config, ConfigError
from char_gpt_zh.data import Data
from char_gpt_zh.model import build_model


class CheckpointError(RuntimeError):
    """检查点缺失、损坏，或与模型配置不匹配。"""


def save_checkpoint(path: Path, state: dict, keep_previous: bool = False) -> None:
    """先写入临时文件并 fsync，再重命名覆盖目标文件。
    os.replace 是原子操作：崩溃或 kill -9 之后，留下的要么是旧检查点，
    要么是新检查点，绝不会是两者各半。keep_previous 会把旧文件保留为 *.prev.pt，
    最新文件损坏时可以退回使用。
    """
    if not all_finite(state):
        text = "不写入 {}：权重或优化器状态中有 inf 或 nan"
        raise FloatingPointError(text.format(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # 用普通的 open() 创建文件，权限由 umask 决定，共享文件系统上同组的人也能读取。
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
                # 另一个进程先移走了 last.pt：没有需要保留的文件
                pass
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


def all_finite(state) -> bool:
    """状态中的浮点张量都不含 inf 或 nan 时返回 True（只读取主机一次）。"""
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
    """把只含张量和普通 Python 值的检查点加载到 CPU 上。"""
    try:
        with warnings.catch_warnings():
            # torch 在拒绝文件之前会先警告 pickle 协议：下面的拒绝信息用一行说清楚
            warnings.simplefilter("ignore", UserWarning)
            # weights_only=True 只恢复张量和基本的 Python 类型，与完整的反序列化相比，
            # 恶意文件能利用的东西少得多。
            # 自 PyTorch 2.6 起这是默认值；显式写出是为了表明意图。这也是检查点只保存
            # state_dict 和普通值、从不保存整个模块或 argparse Namespace 的原因。
            # https://pytorch.org/docs/stable/notes/serialization.html#weights-only
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"找不到检查点 {path}") from None
    except Exception as e:
        reason = why_unreadable(path, e)
        text = "{path} 不是可读取的检查点（{reason}）"
        raise CheckpointError(text.format(path=path, reason=reason)) from None
    if not isinstance(state, dict):
        text = "{path} 里是一个 {kind}，而不是检查点字典"
        raise CheckpointError(text.format(path=path, kind=type(state).__name__))
    return state


def why_unreadable(path: str | Path, error: Exception) -> str:
    """用用户能看懂的话说明文件为什么无法加载：空文件、普通 pickle、不是 torch 文件、
    被截断，或被 weights_only 拒绝。
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        return e.strerror or type(e).__name__
    if not head:
        return "文件是空的"
    # pickle 以协议字节开头；torch.save 写出的是 zip 文件
    if head[:1] == b"\x80":
        return "这是普通的 pickle 文件，不是 torch.save 保存的检查点"
    if head != b"PK\x03\x04":
        return "不是 torch 检查点：torch.save 写出的是 zip 文件"
    if not is_zip:
        return "文件被截断了：在 zip 索引之前就结束了"
    text = str(error).strip()
    if "weights_only" in text:
        # torch 的拒绝说明是一整段：只保留指出被拒绝内容的那一行
        found = [line for line in text.splitlines() if "WeightsUnpickler" in line]
        cause = found[0].split(":", 1)[1].strip() if found else text.split(". ")[0]
        refused = "不是本项目保存的检查点：weights_only 拒绝了它：{}"
        return refused.format(cause)
    # 只取一行：torch 拒绝 pickle 时的说明有十几行
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def rng_state() -> dict:
    """训练中用到的所有随机数生成器的状态。
    Dropout 从 torch 的随机数生成器取数。恢复训练时还原它，dropout
    掩码以及最终权重就与不中断的训练逐位相同。
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
    """最新的可读检查点，不可读时退回到上一个；一个都没有时返回 None，
    两个都损坏时报错。
    """
    damaged = []
    for candidate in (path, previous(path)):
        if candidate.exists():
            try:
                return check_progress(load_checkpoint(candidate), candidate)
            except CheckpointError as e:
                msg = "警告：{}"
                print(msg.format(e), file=sys.stderr)
                damaged.append(candidate.name)
    if damaged:
        # 从头开始会覆盖 best.pt 和 metrics.jsonl：不如在任何改动之前就停下。
        msg = (
            "{where}：{names} 无法加载，也没有可读的备用检查点；"
            "什么都没有改动（用 --resume PATH 指定一个文件）"
        )
        names = " 和 ".join(damaged)
        raise CheckpointError(msg.format(where=path.parent, names=names))
    return None


def checkpoint_config(ckpt: dict, path: str) -> tuple[Config, dict]:
    """训练这个检查点时所用的配置和数据描述。别的模型的文件，或者缺少这两项的文件，
    会报 CheckpointError，而不是 TypeError。
    """
    if not isinstance(ckpt.get("config"), dict) or "data" not in ckpt:
        msg = "{} 没有 config 或 data：它只有权重，不是一次训练"
        raise CheckpointError(msg.format(path))
    saved = ckpt["config"]
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(str(k) for k in saved if k not in known)
    if unknown:
        msg = "{} 来自另一个项目：它的 config 里有本项目不认识的字段：{}"
        raise CheckpointError(msg.format(path, "、".join(unknown[:5])))
    try:
        cfg = Config(**saved)
    except ConfigError as e:
        msg = "{} 属于另一个模型：{}"
        raise CheckpointError(msg.format(path, e)) from None
    except (TypeError, ValueError):
        msg = "{} 的 config 记录已损坏：有值的类型不对"
        raise CheckpointError(msg.format(path)) from None
    check_data(ckpt["data"], cfg, path)
    return cfg, ckpt["data"]


def numbers(value, length: int) -> bool:
    """由 `length` 个数字组成的列表。"""
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, (int, float)) for v in value)
    )


def check_data(meta, cfg: Config, path: str | Path) -> None:
    """检查 predict、sample 和 export 要从检查点数据信息中读取的内容存在且类型正确；
    只有一个类别，或列表与模型不符，都用一行拒绝。
    """
    needs = {
        "vocab": lambda v: isinstance(v, list) and len(v) >= 1,
    }
    if isinstance(meta, dict) and "tokenizer_json" in meta:
        # BPE 分词器以 JSON 保存，而不是词表列表
        del needs["vocab"]
        needs["tokenizer_json"] = lambda v: isinstance(v, str)
    for key, fits in needs.items():
        if not isinstance(meta, dict) or key not in meta or not fits(meta[key]):
            msg = "{} 缺少 predict 和 export 需要的内容：data[{!r}] 缺失或与模型不符"
            raise CheckpointError(msg.format(path, key))


def check_progress(ckpt: dict, path: str | Path) -> dict:
    """续训所依据的计数都是整数（best_val_loss 是数字）：
    损坏或被手动修改的检查点用一行拒绝，--resume auto 会退回到 last.prev.pt。
    """
    for f in dataclasses.fields(Progress):
        # 缺少的计数由 restore 报告为“不符”
        if f.name not in ckpt:
            continue
        value = ckpt[f.name]
        if f.type is int:
            fits = type(value) is int and value >= 0
            want = "不小于 0 的整数"
        else:
            fits = type(value) in (int, float) and not math.isnan(value)
            want = "数字"
        if not fits:
            msg = "{} 的进度记录已损坏：{} 必须是{}，而不是 {!r}"
            raise CheckpointError(msg.format(path, f.name, want, value))
    return ckpt


def check_finite(model: nn.Module, path: str | Path) -> nn.Module:
    """含 inf 或 nan 的权重会悄无声息地给出无意义的预测：用一行拒绝。"""
    if not all_finite(model.state_dict()):
        msg = "{} 的权重中有 inf 或 nan，用它预测没有意义（请用更早的检查点）"
        raise CheckpointError(msg.format(path))
    return model


def weights_of(ckpt: dict, path: str | Path) -> dict:
    """裸的 state_dict（torch.save(model.state_dict(), path)）只有权重：--init-from
    可以直接使用。
    """
    if "model" in ckpt:
        return ckpt["model"]
    if ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt
    msg = "{} 里没有模型权重（没有键 'model'）"
    raise CheckpointError(msg.format(path))


def load_trained(path: str, raw: bool = False) -> tuple[nn.Module, Config, dict]:
    """从检查点或导出文件夹中取得训练好的模型、它的配置和数据信息：predict、sample 和
    export 都这样加载。
    """
    if Path(path).is_dir():
        return load_export(Path(path))
    ckpt = load_checkpoint(path)
    weights_of(ckpt, path)
    cfg, meta = checkpoint_config(ckpt, path)
    model = build_model(cfg)
    load_model_state(model, model_weights(ckpt, raw))
    return check_finite(model, path), cfg, meta


def safetensors_torch():
    """safetensors 是可选依赖：用到时才导入，缺少时只报一行。"""
    try:
        import safetensors.torch
    except ImportError:
        needed = "需要 safetensors：pip install safetensors"
        raise CheckpointError(needed) from None
    return safetensors.torch


def load_export(folder: Path) -> tuple[nn.Module, Config, dict]:
    """导出的模型、它的配置和数据信息：build_model 加上 safetensors 文件，
    输出与检查点完全相同。
    """
    if not (folder / "config.json").is_file():
        msg = (
            "{} 是一个没有 config.json 的文件夹，不是导出文件夹："
            "请给出检查点文件（例如 checkpoints/best.pt）或 export 写出的文件夹"
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
        msg = "{} 不是导出文件夹（{}）"
        raise CheckpointError(msg.format(folder, reason)) from None


def model_weights(ckpt: dict, raw: bool = False) -> dict:
    """predict 和 sample 使用的权重：检查点里有 EMA 时用 EMA，除非指定使用原始权重。"""
    if raw or "ema" not in ckpt:
        return ckpt["model"]
    # AveragedModel 把模型放在 'module.' 之下，并用 n_averaged 记录更新次数。
    ema = ckpt["ema"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"}


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
        texts = [
            ("缺少键 {}", missing),
            ("多出的键 {}", unexpected),
            ("形状不同（检查点与模型）：{}", reshaped),
        ]
        parts = [text.format(keys[:5]) for text, keys in texts if keys]
        msg = "这个检查点来自不同的模型配置："
        raise CheckpointError(msg + "；".join(parts))
    model.load_state_dict(state)


@dataclass
class Progress:
    """训练进行到哪里：检查点中除各个 state_dict 之外的全部内容。"""

    step: int = 0
    epoch: int = 0
    consumed: int = 0
    best_val_loss: float = math.inf
    skipped: int = 0


def capture(parts: dict, progress: Progress, cfg: Config, data: Data) -> dict:
    """检查点内容：各部件的 state_dict、进度、随机数状态、配置和数据元信息。"""
    return {
        **{name: part.state_dict() for name, part in parts.items()},
        **dataclasses.asdict(progress),
        "rng": rng_state(),
        "config": dataclasses.asdict(cfg),
        "data": data.meta,
    }


def restore(ckpt: dict, parts: dict) -> Progress:
    """把检查点载入各部件；与本次运行不匹配的检查点只报一个清楚的 CheckpointError。"""
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
        # 缺少某个键、换了优化器或换了模型配置：用一行说明。
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        msg = "这个检查点与本次训练不符：{}"
        raise CheckpointError(msg.format(reason)) from None
    resumed = "从第 {step} 步（第 {epoch} 轮）恢复训练"
    resumed = resumed.format(step=progress.step, epoch=progress.epoch)
    print(resumed, file=sys.stderr)
    return progress


def resume_from(cfg: Config, out_dir: Path) -> dict | None:
    """返回要续训的检查点，全新运行则返回 None；已有运行记录的 out_dir
    绝不会被悄悄覆盖。
    """
    if any(p.is_file() for p in (out_dir, *out_dir.parents)):
        msg = "--out-dir {}：有一个文件占着这个文件夹的位置"
        raise ConfigError(msg.format(out_dir))
    if cfg.resume == "auto":
        return latest_checkpoint(out_dir / "checkpoints/last.pt")
    if cfg.resume != "none":
        return check_progress(load_checkpoint(cfg.resume), cfg.resume)
    held = [out_dir / "metrics.jsonl", out_dir / "checkpoints/last.pt"]
    if any(p.exists() for p in held) and not cfg.overwrite:
        msg = "{} 里已有一次训练：用 --resume auto 接着训练，或用 --overwrite 覆盖它"
        raise ConfigError(msg.format(out_dir))
    if cfg.overwrite:
        # 从头开始：旧运行的检查点也一并删除，否则第一次保存会把旧的 last.pt
        # 留作本次运行的后备。
        for old in (out_dir / "checkpoints").glob("*.pt"):
            old.unlink(missing_ok=True)
    return None
