"""Train: python -m text_classifier.train [--config FILE.toml] [--FIELD VALUE ...]"""

import dataclasses
import gc
import math
import random
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from text_classifier.checkpoint import (
    CheckpointError,
    Progress,
    capture,
    fit_to_world,
    load_checkpoint,
    load_model_state,
    restore,
    resume_from,
    save,
    weights_of,
)
from text_classifier.config import Config, ConfigError, load_config
from text_classifier.data import DataError, build_datasets, loaders, micro_batches
from text_classifier.distributed import (
    all_ranks,
    barrier,
    gradient_sync,
    parallelize,
    setup_distributed,
)
from text_classifier.metrics import MetricsLog, Telemetry
from text_classifier.model import build_model
from text_classifier.optim import build_scheduler, configure_optimizer
from text_classifier.precision import Precision
from text_classifier.run import RunFolder


def pick_device(name: str) -> torch.device:
    """The device to train on; a device that is not there is a config error, not a
    traceback.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.type == "cuda" and (device.index or 0) >= count:
        msg = "--device {}: this machine has {} CUDA GPUs; use auto or cpu"
        raise ConfigError(msg.format(name, count))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available here; use auto or cpu")
    return device


def to_device(batch: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to the device without waiting: from pinned memory the copy
    overlaps compute.
    """
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def loss_fn(cfg: Config, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target, label_smoothing=cfg.label_smoothing)


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg, device, precision: Precision) -> dict:
    """Mean loss and accuracy over the whole validation split."""
    model.eval()
    # loss * n, n, correct: summed on the device and read once at the end, not once per
    # batch.
    sums = torch.zeros(3, device=device)
    for batch in loader:
        x, y = to_device(batch, device)
        with precision.autocast():
            output = model(x)
        # Losses and metrics in fp32: a low-precision loss would round val_loss, and
        # best.pt is chosen by it.
        output = output.float()
        sums[0] += loss_fn(cfg, output, y) * len(y)
        sums[1] += len(y)
        sums[2] += (output.argmax(dim=-1) == y).sum()
    model.train()
    # Sum the per-rank totals, so every rank returns the metrics of the whole validation
    # set.
    total, n, correct = all_ranks(sums).tolist()
    return {"loss": total / n, "accuracy": correct / n}


def check_flags(nonfinite_at: torch.Tensor, signum: int | None) -> int | None:
    """At an event the ranks agree, in one all-reduce, on a non-finite loss and on a
    stop signal.
    """
    flags = torch.stack([nonfinite_at, nonfinite_at.new_tensor(signum or 0)])
    bad, signum = all_ranks(flags, dist.ReduceOp.MAX).tolist()
    if bad:
        msg = (
            "the loss became inf or nan at step {}; stopped before it reached a "
            "checkpoint"
        )
        raise FloatingPointError(msg.format(bad))
    return signum or None


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

    def exit(self, step: int) -> None:
        stopped = "stopped at step {step}; continue with --resume auto"
        print(stopped.format(step=step), file=sys.stderr)
        # 128 + the signal number: 130 for SIGINT, 143 for SIGTERM, as a shell reports
        # them.
        raise SystemExit(128 + self.signum)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train_step(model, optimizer, batches, progress, cfg, device, precision) -> tuple:
    """One optimizer step: forward and backward over grad_accum_steps micro-batches,
    clip, update. Nothing here reads from the device.
    """
    scaler = precision.scaler
    loss_sum = torch.zeros((), device=device)
    # Gradients add up over grad_accum_steps micro-batches: a larger batch in the same
    # memory.
    for micro in range(cfg.grad_accum_steps):
        progress.epoch, progress.consumed, batch = next(batches)
        x, y = to_device(batch, device)
        # Skip the gradient all-reduce on all but the last micro-batch: one all-reduce
        # per optimizer step.
        with gradient_sync(model, micro == cfg.grad_accum_steps - 1):
            with precision.autocast():
                loss = loss_fn(cfg, model(x), y) / cfg.grad_accum_steps
            # Backward through the scaled loss (a no-op scale when the scaler is off).
            scaler.scale(loss).backward()
            loss_sum += loss.detach()
    # Unscale first, so the clip threshold applies to the true gradient norm.
    scaler.unscale_(optimizer)
    # The total gradient norm before clipping, kept on the device; max_norm=inf measures
    # it without clipping.
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
    # where found_inf is 1 the fused optimizer skips the update on the device
    optimizer.found_inf = grad_norm.isfinite().logical_not().float()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def build(cfg: Config, device: torch.device, rank: int, world: int) -> tuple:
    """Data, model and optimizer; `parts` holds everything with a state_dict, under
    its checkpoint key.
    """
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data = build_datasets(cfg)
    # The input size, the classes or the vocabulary come from the data.
    cfg = dataclasses.replace(cfg, **data.sizes)
    model = build_model(cfg).to(device)
    if cfg.init_from:
        weights = weights_of(load_checkpoint(cfg.init_from), cfg.init_from)
        load_model_state(model, weights)
    # After the identical initial weights, each rank draws its own dropout masks.
    torch.manual_seed(cfg.seed + rank)
    # Everything with a state_dict that exact resume needs, under its checkpoint key.
    parts = {"model": model}
    parts["scaler"] = Precision(cfg.precision, device)
    # Checkpoints hold the unwrapped module, so their keys have no 'module.' prefix.
    model = parallelize(model, world, device)
    parts["optimizer"] = configure_optimizer(model, cfg, device)
    return cfg, data, model, parts


def train(cfg: Config) -> dict:
    """Train from cfg; return the last validation metrics."""
    rank, world, device = setup_distributed(cfg)
    device = device or pick_device(cfg.device)
    if device.type == "cuda":
        # TF32 tensor cores for fp32 matmuls: about 8x the fp32 rate on an A100 or H100,
        # at 10 bits of mantissa.
        torch.set_float32_matmul_precision("high")
    cfg, data, model, parts = build(cfg, device, rank, world)
    optimizer, raw_model = parts["optimizer"], parts["model"]
    precision = parts["scaler"]
    out_dir = Path(cfg.out_dir)
    ckpt = resume_from(cfg, out_dir)
    cfg = fit_to_world(cfg, ckpt, world)
    loader, val_loader = loaders(data, cfg, device, rank, world)
    total_steps = cfg.max_steps or cfg.epochs * loader.batch_sampler.steps_per_epoch
    scheduler = parts["scheduler"] = build_scheduler(optimizer, cfg, total_steps)
    barrier()  # Every rank has checked the run folder before rank 0 writes to it.
    progress = restore(ckpt, parts, rank, world) if ckpt else Progress()
    first, resumed = progress.step, progress.step if ckpt else None
    run = RunFolder(cfg, out_dir, device, world, resumed) if rank == 0 else None
    log = MetricsLog(out_dir / "metrics.jsonl", resumed, total_steps, run)
    dtype = precision.dtype
    telemetry = Telemetry(cfg, raw_model, device, dtype, world, first)
    batches = micro_batches(loader, progress.epoch, progress.consumed)
    # Counters that live on the device: reading them would stall the GPU, so they are
    # read only at events.
    skipped = torch.tensor(float(progress.skipped), device=device)
    nonfinite_at = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = grad_norm = torch.zeros((), device=device)
    lr = optimizer.param_groups[0]["lr"]
    metrics = {}
    with GracefulStop() as stop:
        while True:
            step = progress.step
            # Logging, evaluation and saving happen at events; the steps in between
            # never read from the device.
            due, end = step > first or step == 0, step >= total_steps
            log_now = due and step > 0 and step % cfg.log_every == 0
            eval_now = due and (step % cfg.eval_every == 0 or end)
            save_now = due and step > 0 and (step % cfg.save_every == 0 or end)
            if log_now or eval_now or save_now:
                stop.signum = check_flags(nonfinite_at, stop.signum)
                progress.skipped = int(skipped.item())
            stopping = stop.signum is not None and (log_now or eval_now or save_now)
            if log_now:
                # mean over ranks (gloo has no AVG)
                loss_sum = all_ranks(loss_sum / world)
                loss, norm = torch.stack([loss_sum, grad_norm]).tolist()
                values = dict(loss=loss, grad_norm=norm, skipped=progress.skipped)
                timing = telemetry.measure(step)
                log.write("train", step, progress.epoch, lr=lr, **values, **timing)
            if eval_now:
                metrics = evaluate(raw_model, val_loader, cfg, device, precision)
                lr_now = optimizer.param_groups[0]["lr"]
                log.write("val", step, progress.epoch, lr=lr_now, **metrics)
                # best.pt is chosen by the loss of the weights predict and sample will
                # use
                score = metrics["loss"]
                if score < progress.best_val_loss:
                    progress.best_val_loss = score
                    state = capture(parts, progress, cfg, data)
                    save(out_dir / "checkpoints/best.pt", state)
            if save_now or stopping:
                state = capture(parts, progress, cfg, data)
                last = out_dir / "checkpoints/last.pt"
                save(last, state, keep_previous=True)
            if stopping:
                log.close(step)
                stop.exit(step)
            if eval_now or save_now:
                # Throughput counts training steps only, not evaluation or saving.
                telemetry.restart(step)
            if end:  # At or past it: a resume with a smaller --max-steps stops too.
                break
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, grad_norm = train_step(
                model, optimizer, batches, progress, cfg, device, precision
            )
            # Remember the first step whose loss was inf or nan, on the device, without
            # a sync.
            first_bad = ~loss_sum.isfinite() & (nonfinite_at == 0)
            nonfinite_at.masked_fill_(first_bad, step + 1)
            # steps whose update was skipped, counted on the device
            skipped += grad_norm.isfinite().logical_not()
            scheduler.step()
            progress.step += 1
            log.step()
    log.close(step)
    return metrics


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(argv)
    try:
        metrics = train(cfg)
    except ConfigError as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(2)
    except (DataError, CheckpointError, FloatingPointError) as e:
        msg = "error: {}"
        print(msg.format(e), file=sys.stderr)
        sys.exit(1)
    finally:
        is_rank0 = not dist.is_initialized() or dist.get_rank() == 0
        if dist.is_initialized():
            # Free the model now: reference cycles would keep DDP's or FSDP's hold on
            # the process group, and its gloo threads, alive into interpreter shutdown.
            gc.collect()
            dist.destroy_process_group()
    if is_rank0:
        msg = (
            "nothing to train: the run is already at its last step; raise --max-steps "
            "or --epochs to go on"
        )
        print(" ".join(f"val_{k}={v:.4f}" for k, v in metrics.items()) or msg)


if __name__ == "__main__":
    main()
