"""Epoch order for finite data sets: every training row is seen once per epoch, across all ranks.

Global batch k covers positions [k B, (k + 1) B) of the endless sequence perm_0 ++ perm_1 ++ ..., where
perm_e is a permutation of the N rows seeded by (seed, e). The rows of a step are therefore a pure function
of (seed, step): resuming needs no saved sampler state, and a rank that keeps its slice of the global batch
sees rows no other rank sees in that epoch.

The permutations are drawn on the device that indexes with them (once per epoch, cached), so a GPU run's
batches never cross from the host; its order is that of the GPU's generator, a CPU run's that of the CPU's.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["epoch_indices"]


@lru_cache(maxsize=8)
def _permutation(n_rows: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    generator = torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n_rows, generator=generator, device=device)


def epoch_indices(step: int, batch: int, n_rows: int, seed: int = 0, device: torch.device | str = "cpu") -> Tensor:
    """Row indices (batch,) int64 on `device` of global batch `step` in the epoch order described above."""
    if n_rows < 1 or batch < 1 or step < 0:
        raise ValueError(f"need n_rows >= 1, batch >= 1, step >= 0; got {n_rows}, {batch}, {step}")
    device = torch.device(device)
    start, stop = step * batch, (step + 1) * batch
    # Epochs and offsets in Python integers: slicing the cached permutations reads nothing back from the device.
    parts = []
    for epoch in range(start // n_rows, (stop - 1) // n_rows + 1):
        first = epoch * n_rows  # position of perm_epoch[0] in the endless sequence
        lo, hi = max(start, first) - first, min(stop, first + n_rows) - first
        parts.append(_permutation(n_rows, seed, epoch, device)[lo:hi])
    return torch.cat(parts)
