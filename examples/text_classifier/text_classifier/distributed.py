"""Process groups under torchrun: setup with an elastic-restart store, the model
wrapper, and what the ranks agree on.
"""

import os
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from text_classifier.config import Config


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


def parallelize(model: nn.Module, world: int, device: torch.device) -> nn.Module:
    """Wrap the model in DistributedDataParallel when there is more than one rank."""
    if world == 1:
        return model
    return DDP(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        # gradients are views into the all-reduce buckets: no copy, less memory
        gradient_as_bucket_view=True,
    )


def gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro-batch: one all-reduce
    per optimizer step.
    """
    if enabled or not isinstance(model, DDP):
        return nullcontext()
    return model.no_sync()


def all_ranks(values: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """Combine a tensor over all ranks in place (a no-op in one process)."""
    if dist.is_initialized():
        dist.all_reduce(values, op=op)
    return values


def barrier() -> None:
    """The others wait here for rank 0's verdict, then at a barrier, so every rank
    leaves save() with the checkpoint on disk.
    """
    if dist.is_initialized():
        dist.barrier()
