"""Distances between two point clouds: exact Wasserstein-2 (via POT) and the kernel MMD.

Both are estimates from finite samples: even two independent draws of one distribution sit at a
positive distance, the *noise floor*. Report a model's distance to held-out data next to
:func:`w2_noise_floor` at the same sample size, or the number cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import ot
import torch
from torch import Tensor

__all__ = ["wasserstein2", "w2_noise_floor", "mmd_rbf", "median_distance"]

_EMD_MAX_ITER = 10_000_000  # the network simplex needs a few million pivots at n = 4000


def _as_flat_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Check two clouds (N, *D), (M, *D) and flatten them to (N, F), (M, F)."""
    if x.dim() < 2 or y.dim() < 2 or x.shape[1:] != y.shape[1:]:
        shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(f"expected point clouds of shapes (N, *D) and (M, *D), got {shapes}")
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"point clouds must not be empty, got {x.shape[0]} and {y.shape[0]} points")
    return x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)


def wasserstein2(x: Tensor, y: Tensor) -> float:
    """Exact W2 between the empirical measures (1/N) sum delta_{x_i} and (1/M) sum delta_{y_j}.

    W2 = sqrt(min over couplings pi of sum_ij pi_ij |x_i - y_j|^2), solved exactly by POT's network
    simplex (`ot.emd2`) on float64 squared Euclidean costs. x: (N, *D), y: (M, *D), flattened to
    vectors. Memory and time grow like N M: n = 4000 takes a few seconds and 128 MB.
    Raises RuntimeError if the solver stops before the optimum.
    """
    x, y = _as_flat_pair(x, y)
    a = x.detach().cpu().to(torch.float64).numpy()
    b = y.detach().cpu().to(torch.float64).numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    weights_a = np.full(a.shape[0], 1.0 / a.shape[0])
    weights_b = np.full(b.shape[0], 1.0 / b.shape[0])
    squared, log = ot.emd2(weights_a, weights_b, cost, numItermax=_EMD_MAX_ITER, log=True)
    if log.get("warning"):
        raise RuntimeError(f"exact optimal transport did not converge: {log['warning']}")
    return float(np.sqrt(max(float(squared), 0.0)))  # round-off can leave -1e-17


def w2_noise_floor(sample: Callable[[int, torch.Generator], Tensor], n: int, seed: int = 0) -> float:
    """W2 between two independent n-point draws of one distribution: the smallest W2 a perfect model
    can be expected to reach against n held-out points.

    `sample(n, generator)` draws n points (a DataSource's `.sample` fits); the two draws use generators
    seeded with `seed` and `seed + 1`.
    """
    first = sample(n, torch.Generator().manual_seed(seed))
    second = sample(n, torch.Generator().manual_seed(seed + 1))
    return wasserstein2(first, second)


def median_distance(x: Tensor, max_points: int = 1024) -> float:
    """Median Euclidean distance over pairs i < j of the rows of x: (N, F).

    For N > max_points an evenly strided subset of max_points rows is used: deterministic, and
    plenty for a bandwidth.
    """
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 points for a median distance, got {x.shape[0]}")
    if x.shape[0] > max_points:
        x = x[torch.linspace(0, x.shape[0] - 1, max_points).long()]
    i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    return float(torch.cdist(x, x)[i, j].median())


def _mean_kernel(a: Tensor, b: Tensor, scales: Tensor, chunk: int = 256) -> Tensor:
    """mean over i, j of sum_s exp(-|a_i - b_j|^2 / (2 s^2)), in row chunks to bound memory."""
    total = torch.zeros((), dtype=a.dtype)
    for rows in a.split(chunk):
        sq = torch.cdist(rows, b).pow(2)
        total = total + torch.exp(-sq[..., None] / (2.0 * scales**2)).sum()
    return total / (a.shape[0] * b.shape[0])


def mmd_rbf(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    scale: float | None = None,
) -> float:
    """Squared MMD with a sum of Gaussian kernels, biased (V-statistic) estimate.

    k(a, b) = sum_s exp(-|a - b|^2 / (2 (s h)^2)) for s in `bandwidths`, where the length unit h is
    `scale`, or by default the median pairwise distance of the pooled sample. Then
    MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), all means over every pair including i = j.
    The biased form is >= 0 and exactly 0 when x and y are the same cloud; it is larger than the
    unbiased one by about (k(0) - mean k) (1/N + 1/M). x: (N, *D), y: (M, *D); computed in float64.
    """
    x, y = _as_flat_pair(x, y)
    if not bandwidths or any(s <= 0 for s in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers, got {bandwidths!r}")
    x = x.detach().cpu().to(torch.float64)
    y = y.detach().cpu().to(torch.float64)
    if scale is None:
        scale = median_distance(torch.cat([x, y]))
    if not scale > 0:
        raise ValueError(f"kernel scale must be positive, got {scale} (all points identical?); pass scale=")
    scales = torch.tensor(bandwidths, dtype=torch.float64) * scale
    value = _mean_kernel(x, x, scales) + _mean_kernel(y, y, scales) - 2.0 * _mean_kernel(x, y, scales)
    return max(float(value), 0.0)


def floor_ratio(value: float, floor: float) -> float:
    """value / floor, a metric over its noise floor (the same metric between two held-out draws); inf for a
    zero floor (a sampler can only match it exactly)."""
    return value / floor if floor > 0 else float("inf")
