"""Data-parallel training under ``torchrun`` (DDP): one process per GPU (or per CPU slot with gloo).

Every process holds all films and evaluates the whole validation split itself: the weights are
identical after each all-reduced step, so every process reaches the same early-stopping decision
without further communication. Only rank 0 writes the run folder.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        if not self.distributed:
            return "1 process"
        return f"{self.world_size} processes (DDP, {self.backend})"


def start(device_type: str) -> Processes:
    """Join the process group ``torchrun`` set up in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    backend = "nccl" if device_type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Processes(dist.get_rank(), world_size, local_rank, backend)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, processes: Processes, device: torch.device) -> nn.Module:
    """The module the training step calls. Re-wrapped per phase: DDP fixes at construction which
    parameters it all-reduces, and a phase changes which ones train."""
    if not processes.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def broadcast(value: str, processes: Processes) -> str:
    """Rank 0's ``value`` on every rank (the run folder's path)."""
    if not processes.distributed:
        return value
    holder: list[str] = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
