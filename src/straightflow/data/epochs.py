"""Epoch order for finite data sets: every training row is seen once per epoch, across all ranks.

Global batch k covers positions [k B, (k + 1) B) of the endless sequence perm_0 ++ perm_1 ++ ..., where
perm_e is a permutation of the N rows seeded by (seed, e). The rows of a step are therefore a pure function
of (seed, step): resuming needs no saved sampler state, and a rank that keeps its slice of the global batch
sees rows no other rank sees in that epoch.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["epoch_indices"]


@lru_cache(maxsize=4)
def _permutation(n_rows: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(n_rows, generator=torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63))


def epoch_indices(step: int, batch: int, n_rows: int, seed: int = 0) -> Tensor:
    """Row indices (batch,) of global batch `step` in the epoch order described above."""
    if n_rows < 1 or batch < 1 or step < 0:
        raise ValueError(f"need n_rows >= 1, batch >= 1, step >= 0; got {n_rows}, {batch}, {step}")
    pos = torch.arange(step * batch, (step + 1) * batch)
    epoch, offset = pos // n_rows, pos % n_rows
    out = torch.empty(batch, dtype=torch.long)
    for e in epoch.unique().tolist():
        mask = epoch == e
        out[mask] = _permutation(n_rows, seed, e)[offset[mask]]
    return out
