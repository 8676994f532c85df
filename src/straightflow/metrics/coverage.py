"""Precision and recall of a generated point cloud against a real one (Kynkaanniemi et al. 2019).

Each cloud is read as a union of balls: around every point, the ball reaching its k-th nearest neighbour in
its own cloud. Then

    precision = share of fake points inside the real cloud's balls    (are the samples plausible?)
    recall    = share of real points inside the fake cloud's balls    (is all of the data covered?)

A sampler that collapses onto the data's densest ridges keeps its precision and loses recall; one that
smears mass off the data loses precision. Distances like W2 fold both failures into one number (and a
collapse can even score below the noise floor), so evaluations report the pair beside W2. Compare sets of
equal size: the balls shrink as a cloud grows. Works for any features: raw vectors, or an image network's
embeddings (metrics/images.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["precision_recall"]


def _kth_radius(f: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """(N,) distance of each row of f (N, F) to its k-th nearest other row."""
    return torch.cat([torch.cdist(c, f).kthvalue(k + 1, dim=1).values for c in f.split(chunk)])


def _covered(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """(P,) bool: whether each point lies in some ball (centre, radius)."""
    return torch.cat([(torch.cdist(c, centres) <= radii).any(dim=1) for c in points.split(chunk)])


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of fake (M, F) against real (N, F), k-nearest-neighbour balls; computed in float64."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, F) and (M, F), got {tuple(real.shape)} and {tuple(fake.shape)}")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must lie in [1, {min(real.shape[0], fake.shape[0]) - 1}] for these sets, got {k}")
    real, fake = real.detach().cpu().double(), fake.detach().cpu().double()
    precision = _covered(fake, real, _kth_radius(real, k)).double().mean()
    recall = _covered(real, fake, _kth_radius(fake, k)).double().mean()
    return float(precision), float(recall)
