"""Train: python -m image_classifier.train [--config FILE.toml] [--FIELD VALUE ...]"""

import dataclasses
import itertools
import json
import math
import os
import random
import signal
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from image_classifier.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from image_classifier.config import Config, ConfigError, load_config
from image_classifier.data import DataError, build_datasets
from image_classifier.model import build_model


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_distributed(cfg: Config) -> tuple[int, int, torch.device | None]:
    """Join the process group that torchrun set up; return (rank, world size,
    device).
    """
    if "RANK" not in os.environ:
        # A plain single process: no process group.
        return 0, 1, None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    # A store namespaced per restart attempt: after a worker dies, the restarted group
    # must not meet the dead group's keys.
    store = dist.PrefixStore(
        f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}",
        dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            world,
            is_master=rank == 0
            and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True",
            timeout=timedelta(seconds=cfg.dist_timeout),
        ),
    )
    timeout = timedelta(seconds=cfg.dist_timeout)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        # NCCL on GPUs; device_id binds this process to its GPU at once.
        dist.init_process_group(
            "nccl",
            store=store,
            rank=rank,
            world_size=world,
            timeout=timeout,
            device_id=device,
        )
    else:
        device = torch.device("cpu")
        dist.init_process_group(
            "gloo", store=store, rank=rank, world_size=world, timeout=timeout
        )
    return rank, world, device


def configure_optimizer(model: nn.Module, cfg: Config, device: torch.device):
    # Weight decay on weight matrices only, not on biases or norm gains.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for p in params if p.dim() >= 2],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused optimizer kernel updates all parameters in one pass (CPU and CUDA).
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """The learning-rate schedule; its horizon is counted in optimizer steps."""
    warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else max(1, total_steps // 20)
    cosine = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup), eta_min=cfg.min_lr
    )
    if warmup == 0:
        # SequentialLR with a milestone at 0 is buggy; with no warm-up, cosine is the
        # whole schedule.
        return cosine
    # Warm up linearly from lr / 1000 (LinearLR needs a start factor above 0).
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def loss_fn(cfg: Config, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target, label_smoothing=cfg.label_smoothing)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, cfg: Config, device: torch.device
) -> dict:
    """Mean loss and accuracy over the whole validation split."""
    model.eval()
    total, n, correct = 0.0, 0, 0
    sampler = loader.sampler
    # This rank's share of the split: DistributedSampler pads the split by repeating its
    # first examples, so that every rank runs the same number of batches.
    share = len(range(sampler.rank, len(loader.dataset), sampler.num_replicas))
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        output = model(x)
        # Every rank runs every batch (FSDP gathers parameters inside forward), but the
        # padding repeats, which come last, are not counted: the metrics equal one
        # process's.
        output, y = output[: share - n], y[: share - n]
        if len(y) == 0:
            continue
        total += loss_fn(cfg, output, y).item() * len(y)
        n += len(y)
        correct += (output.argmax(dim=-1) == y).sum().item()
    model.train()
    if dist.is_initialized():
        # Sum the per-rank totals, so every rank returns the metrics of the whole
        # validation set.
        totals = torch.tensor([total, n, correct], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        total, n, correct = totals.tolist()
    return {"loss": total / n, "accuracy": correct / n}


def micro_batches(
    loader: DataLoader, sampler: DistributedSampler, epoch: int, start: int
):
    """Yield (epoch, index, batch) forever, starting at batch `start` of `epoch`."""
    while True:
        # set_epoch reseeds the shuffle: without it every epoch repeats the same order.
        sampler.set_epoch(epoch)
        for i, batch in enumerate(itertools.islice(loader, start, None), start):
            yield epoch, i, batch
        epoch, start = epoch + 1, 0


class GracefulStop:
    """Ctrl-C (SIGINT) or SIGTERM sets a flag; the loop finishes the step, saves, and
    exits.
    """

    def __enter__(self):
        self.signum = None
        self.previous = {
            s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def handler(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class MetricsLog:
    """One JSON object per line. On resume, events after the checkpoint's step are
    dropped, so every step appears once.
    """

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:  # only rank 0 writes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.exists():
            lines = path.read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, **event) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")


def train(cfg: Config) -> dict:
    """Train from cfg; return the last validation metrics."""
    rank, world, dist_device = setup_distributed(cfg)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    device = dist_device or pick_device(cfg.device)
    data = build_datasets(cfg)
    # The input size, the classes or the vocabulary come from the data.
    cfg = dataclasses.replace(cfg, **data.sizes)
    model = build_model(cfg).to(device)
    if cfg.init_from:
        load_model_state(model, load_checkpoint(cfg.init_from)["model"])
    if world > 1:
        # FSDP2: shard each block, then the root; each block's parameters are gathered
        # only while it runs.
        for block in model.stages:
            fully_shard(block)
        fully_shard(model)
    optimizer = configure_optimizer(model, cfg, device)

    # Each rank gets its own slice of every epoch; drop_last keeps the number of steps
    # equal on all ranks.
    sampler = DistributedSampler(
        data.train, num_replicas=world, rank=rank, seed=cfg.seed, drop_last=True
    )
    # A generator of its own: making an iterator then draws no number from the global
    # RNG that dropout uses, which exact resume needs.
    train_loader = DataLoader(
        data.train,
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator(),
    )
    # Each rank evaluates its share; every rank runs the same number of batches, so none
    # waits forever.
    val_sampler = DistributedSampler(
        data.val, num_replicas=world, rank=rank, shuffle=False
    )
    val_loader = DataLoader(data.val, batch_size=cfg.batch_size, sampler=val_sampler)
    steps_per_epoch = len(train_loader) // cfg.grad_accum_steps
    total_steps = cfg.max_steps or cfg.epochs * max(1, steps_per_epoch)
    scheduler = build_scheduler(optimizer, cfg, total_steps)

    out_dir = Path(cfg.out_dir)
    last_path = out_dir / "checkpoints/last.pt"
    best_path = out_dir / "checkpoints/best.pt"
    step, epoch, start, best = 0, 0, 0, math.inf
    if cfg.resume == "none":
        ckpt = None
    elif cfg.resume == "auto":
        ckpt = latest_checkpoint(last_path)
    else:
        ckpt = load_checkpoint(cfg.resume)
    if ckpt is not None:
        # Everything that decides the next step: weights, optimizer moments, schedule,
        # data position, RNG.
        full = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, ckpt["model"], options=full)
        set_optimizer_state_dict(model, optimizer, ckpt["optimizer"], options=full)
        scheduler.load_state_dict(ckpt["scheduler"])
        step, epoch, start = ckpt["step"], ckpt["epoch"], ckpt["batch"]
        best = ckpt["best_val_loss"]
        if len(ckpt["rng"]) != world:
            raise CheckpointError(
                f"the checkpoint was saved by {len(ckpt['rng'])} ranks, not {world}"
            )
        set_rng_state(ckpt["rng"][rank])  # each rank its own random stream
        if rank == 0:
            print(
                f"resumed from step {step} (epoch {epoch}, batch {start})",
                file=sys.stderr,
            )
    resume_step = step if ckpt else None
    log = MetricsLog(out_dir / "metrics.jsonl", resume_step, enabled=rank == 0)

    def rng_states() -> list:
        """Every rank's RNG state, gathered to all ranks; rank 0 saves them, and each
        rank restores its own.
        """
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, rng_state())
        else:
            states[0] = rng_state()
        return states

    def checkpoint() -> dict:
        # Gather full, unsharded state dicts (on the CPU): last.pt loads into a
        # single-process model.
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {
            "model": get_model_state_dict(model, options=full),
            "optimizer": get_optimizer_state_dict(model, optimizer, options=full),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch": start,
            "best_val_loss": best,
            "rng": rng_states(),
            "config": dataclasses.asdict(cfg),
            "data": data.meta,
        }

    def save(path: Path, keep_previous: bool = False) -> None:
        state = checkpoint()  # every rank takes part in gathering
        if rank == 0:
            save_checkpoint(path, state, keep_previous=keep_previous)
        if world > 1:
            # The others wait until rank 0 has written the file, so every rank leaves
            # save() with the checkpoint on disk.
            dist.barrier()

    def validate() -> dict:
        nonlocal best
        metrics = evaluate(model, val_loader, cfg, device)
        log.write(
            step=step,
            epoch=epoch,
            split="val",
            lr=optimizer.param_groups[0]["lr"],
            **metrics,
        )
        if metrics["loss"] < best:
            best = metrics["loss"]
            save(best_path)
        return metrics

    metrics = validate() if step == 0 else {}
    model.train()
    batches = micro_batches(train_loader, sampler, epoch, start)
    show = None if rank == 0 else True  # a bar on rank 0, on a terminal
    progress = tqdm(total=total_steps, initial=step, disable=show, desc="train")
    with GracefulStop() as stop:
        while step < total_steps:
            lr = optimizer.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=device)
            # Gradients add up over grad_accum_steps micro-batches: a larger batch in
            # the same memory.
            for _ in range(cfg.grad_accum_steps):
                epoch, i, (x, y) = next(batches)
                x, y = x.to(device), y.to(device)
                loss = loss_fn(cfg, model(x), y) / cfg.grad_accum_steps
                loss.backward()
                loss_sum += loss.detach()
            # Stop at the first NaN or inf loss, before it can reach the weights or a
            # checkpoint.
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(
                    f"the loss is {loss_sum.item()} at step {step + 1}"
                )
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, start = step + 1, i + 1
            progress.update()
            if step % cfg.log_every == 0:
                if world > 1:  # mean over ranks (gloo has no AVG)
                    dist.all_reduce(loss_sum)
                    loss_sum /= world
                log.write(
                    step=step, epoch=epoch, split="train", lr=lr, loss=loss_sum.item()
                )
                progress.set_postfix(loss=f"{loss_sum.item():.4f}")
            if step % cfg.eval_every == 0 or step == total_steps:
                metrics = validate()
            stopping = stop.signum is not None
            if world > 1:
                # All ranks agree to stop if any one got a signal, so they stop at the
                # same step; a dead peer raises after dist_timeout instead of hanging.
                flag = torch.tensor([float(stopping)], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stopping = bool(flag.item())
            if step % cfg.save_every == 0 or step == total_steps or stopping:
                save(last_path, keep_previous=True)
            if stopping:
                progress.close()
                print(
                    f"stopped at step {step}; continue with --resume auto",
                    file=sys.stderr,
                )
                # 128 + the signal number: 130 for SIGINT, 143 for SIGTERM, as a shell
                # reports them.
                raise SystemExit(128 + (stop.signum or signal.SIGTERM))
    progress.close()
    return metrics


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(argv)
    try:
        metrics = train(cfg)
    except (ConfigError, DataError, CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        is_rank0 = not dist.is_initialized() or dist.get_rank() == 0
        if dist.is_initialized():
            dist.destroy_process_group()
    if is_rank0:
        print(" ".join(f"val_{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
