"""Single process or DDP under ``torchrun``: the process's rank and world, and the device it trains on."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from kdsr.devices import resolve_device


@dataclasses.dataclass
class Dist:
    """This process's place in the run: rank, number of processes, GPU index on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Dist:
    """Join the ``torchrun`` process group (nccl on CUDA, else gloo) when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = (
            "nccl"
            if device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
            else "gloo"
        )
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def training_device(name: str, ddp: Dist) -> torch.device:
    """The configured device; under DDP on CUDA, this process's GPU."""
    device = resolve_device(name)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device
