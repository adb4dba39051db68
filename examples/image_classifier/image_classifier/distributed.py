"""Process groups under torchrun: setup with an elastic-restart store, the model
wrapper, and what the ranks agree on.
"""

import os
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from image_classifier.config import Config


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


def parallelize(model: nn.Module, world: int) -> nn.Module:
    """Shard each block, then the root, so that one block's parameters are gathered
    at a time.
    """
    if world == 1:
        return model
    for block in model.stages:
        fully_shard(block)
    fully_shard(model)
    return model


def gradient_sync(model: nn.Module, enabled: bool):
    """FSDP2's no_sync: skip the reduce-scatter on all but the last micro-batch."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
    return nullcontext()


class Sharded:
    """A sharded model or optimizer as a state_dict of DTensor shards: what DCP saves
    and loads, rank by rank.
    """

    def __init__(self, model: nn.Module, optimizer=None):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict:
        if self.optimizer is None:
            return get_model_state_dict(self.model)
        return get_optimizer_state_dict(self.model, self.optimizer)

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is None:
            set_model_state_dict(self.model, state)
        else:
            set_optimizer_state_dict(self.model, self.optimizer, state)


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
