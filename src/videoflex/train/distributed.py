"""Process groups and model wrapping for ``torchrun`` (DDP, or FSDP2 for the large presets).

Parallelism is applied outside the model: the same code runs as one process or under torchrun.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from videoflex.utils.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistributedContext:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return DistributedContext(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world, device)


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def mean_across(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    if ctx.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return value


def all_true(ctx: DistributedContext, value: bool) -> bool:
    """Whether ``value`` holds on every process (collective)."""
    if not ctx.enabled:
        return value
    flag = torch.tensor([1 if value else 0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def wrap(module: nn.Module, blocks: list[nn.Module], ctx: DistributedContext, parallel: str) -> nn.Module:
    """DDP around ``module``, or FSDP2 ``fully_shard`` on every block and then on ``module``."""
    if not ctx.enabled:
        return module
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in blocks:
            fully_shard(block)
        return fully_shard(module)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def shutdown(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
