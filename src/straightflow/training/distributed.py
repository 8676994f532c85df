"""Multi-process training through torchrun + DistributedDataParallel.

`torchrun --nproc-per-node N -m straightflow train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; :func:`init_distributed` reads them and joins the process group (gloo on CPU, nccl on
CUDA). Without those variables everything runs as a single process (rank 0 of 1).

How the work is split (see training/trainer.py):
* Every rank builds the *global* batch of step k from the generator seeded by (seed, k) and keeps its own
  contiguous slice, so examples never repeat across ranks and the union over ranks is exactly the batch a
  single process would draw. Minibatch OT can be solved on the global batch ("global": what a gather,
  one solve and a scatter would give, without the communication) or per rank on the slice ("rank").
* Per-example randomness of the method (times, label dropout) comes from a per-rank stream.
* DDP averages gradients in backward; EMA then updates identically on every rank.
* Only rank 0 logs, plots and writes checkpoints; checkpoints do not depend on the world size, so a run
  resumes on any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo", "check_gpus_per_node", "init_distributed", "world_info", "all_reduce_mean", "all_reduce_min",
    "all_gather_cat", "all_gather_objects", "barrier", "shard_range",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def world_info() -> DistInfo:
    """The current process group's rank and size (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def check_gpus_per_node(local_rank: int, local_world_size: int, gpus: int) -> None:
    """One GPU per process on CUDA: a rank without its own GPU would crash inside CUDA, so say what to run.

    Every rank of the node checks the node's process count, so all refuse alike and none waits in the
    rendezvous for a rank that will never come.
    """
    processes = max(local_world_size, local_rank + 1)
    if processes > gpus:
        raise ValueError(
            f"torchrun started {processes} processes on this node (LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE="
            f"{local_world_size}) but torch.cuda.device_count() is {gpus}; pass --nproc-per-node {gpus} or "
            "train on the CPU with train.device=cpu (--device cpu)"
        )


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (idempotent); gloo for CPU, nccl for CUDA (one GPU per rank)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return world_info()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
            check_gpus_per_node(local_rank, local_world_size, torch.cuda.device_count())
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return world_info()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of x over ranks (x itself on one process)."""
    if world_info().enabled:
        x = x.clone()
        dist.all_reduce(x)
        x /= world_info().world_size
    return x


def all_reduce_min(x: torch.Tensor) -> torch.Tensor:
    """Minimum of x over ranks."""
    if world_info().enabled:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.MIN)
    return x


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped (B, ...) tensors from all ranks along dim 0, in rank order."""
    info = world_info()
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_gather_objects(obj: object) -> list[object]:
    """[obj of rank 0, obj of rank 1, ...] (picklable objects of any size); [obj] on one process."""
    info = world_info()
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_info().enabled:
        dist.barrier()


def shard_range(n: int, info: DistInfo | None = None) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n items (shares differ by at most one)."""
    info = info or world_info()
    base, extra = divmod(n, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return start, start + base + (1 if info.rank < extra else 0)
