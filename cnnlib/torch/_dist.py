"""Distributed data parallel plumbing shared by :func:`fit` and :func:`evaluate`.

A process belongs to a distributed run when ``torch.distributed`` is already
initialised, or when ``torchrun`` (or anything else) has set ``WORLD_SIZE`` above 1 in
its environment; in the second case :func:`init_from_env` joins the process group with
gloo on the CPU and NCCL on CUDA.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "all_reduce_sum", "broadcast_int", "info", "init_from_env",
           "swap_sync_batchnorm"]


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size of this process (``rank 0 of 1`` outside a distributed run)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """This process's place in the distributed run, if any."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment.

    Does nothing when the group already exists (a caller set it up) or when the
    environment does not describe a run of more than one process. The backend is NCCL
    for CUDA devices and gloo otherwise; the group is destroyed when the process exits.
    """
    if not dist.is_available():
        return DistInfo()
    if dist.is_initialized():
        return info()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} is set but {missing} are not: start the "
                           f"processes with torchrun, which sets all of them")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy)
    return info()


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over every process (unchanged outside a distributed run)."""
    if info().active:
        # Reduce on the CPU in float64 so that gloo and NCCL give the same counts.
        reduced = values.detach().to("cpu", torch.float64).clone()
        if dist.get_backend() == "nccl":
            reduced = reduced.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(reduced)
        return reduced.cpu()
    return values


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every process."""
    if not info().active:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def swap_sync_batchnorm(model: nn.Module):
    """Replace every batch norm by a SyncBatchNorm sharing its parameters and buffers.

    Returns a function that puts the original modules back, so that the caller's model
    leaves :func:`fit` with the layer types it came in with. The parameters and running
    statistics are the same tensor objects, so nothing needs copying back.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, nn.SyncBatchNorm):
                sync = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                setattr(parent, name, sync)
                swapped.append((parent, name, child))

    def restore() -> None:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)

    return restore
