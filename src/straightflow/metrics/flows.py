"""Metrics of couplings (x0, x1) and of flow trajectories: transport cost, straightness, crossings.

A coupling pairs each source point x0_i with a target point x1_i. Rectified flow and optimal-transport
couplings aim for cheap, non-crossing pairs, whose flows are straight and thus need few solver steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["transport_cost", "straightness", "crossing_rate"]


def transport_cost(x0: Tensor, x1: Tensor) -> float:
    """Mean squared distance of a coupling, E |x1 - x0|^2: the squared norm sums over all of *D.

    x0, x1: (B, *D) with row i of x0 paired to row i of x1.
    """
    if x0.shape != x1.shape or x0.dim() < 2:
        shapes = f"{tuple(x0.shape)} and {tuple(x1.shape)}"
        raise ValueError(f"expected paired batches of one shape (B, *D), got {shapes}")
    return float((x1 - x0).reshape(x0.shape[0], -1).pow(2).sum(dim=1).mean())


def _check_trajectory(trajectory: Tensor, times: Tensor, velocities: Tensor | None) -> None:
    shape = tuple(trajectory.shape)
    if trajectory.dim() < 3 or shape[0] < 2:
        raise ValueError(f"trajectory must have shape (K+1, B, *D) with K >= 1, got {shape}")
    if times.shape != shape[:1]:
        raise ValueError(f"times must have shape ({shape[0]},) like the trajectory, got {tuple(times.shape)}")
    steps = times.diff()
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"times must be strictly monotone, got {times.tolist()}")
    if velocities is not None and velocities.shape != trajectory.shape:
        raise ValueError(f"velocities need the trajectory's shape {shape}, got {tuple(velocities.shape)}")


def straightness(trajectory: Tensor, times: Tensor, velocities: Tensor | None = None) -> float:
    """Liu et al.'s straightness S = E_x0 int_0^1 |(x1 - x0) - v(x_t, t)|^2 dt; 0 iff every path is a
    line travelled at constant speed.

    trajectory: (K+1, B, *D), the states x_{t_k} at times (K+1,) running from t_0 to t_K (either way);
    x0 = trajectory[0], x1 = trajectory[-1]. For a span T = t_K - t_0 other than 1 the reference
    velocity is the mean velocity (x1 - x0) / T and the integral is divided by T, which is the same
    definition after rescaling time to [0, 1]. Squared norms sum over *D, the expectation averages B.

    - `velocities` (K+1, B, *D) given, v(x_{t_k}, t_k) at the grid points: trapezoid rule on the grid.
    - `velocities` None: on each interval the velocity is the chord (x_{k+1} - x_k) / (t_{k+1} - t_k)
      (piecewise constant), integrated exactly by the rectangle rule. Then S equals the mean squared
      chord speed minus |(x1 - x0) / T|^2, and it is 0 exactly when the chords are all equal.
    """
    _check_trajectory(trajectory, times, velocities)
    x = trajectory.reshape(trajectory.shape[0], trajectory.shape[1], -1).to(torch.float64)
    t = times.to(torch.float64).cpu()
    span = t[-1] - t[0]
    mean_velocity = (x[-1] - x[0]) / span  # (B, F)
    dt = t.diff()  # (K,)
    if velocities is None:
        chords = x.diff(dim=0) / dt[:, None, None]  # (K, B, F)
        err = (chords - mean_velocity).pow(2).sum(dim=2).mean(dim=1)  # (K,)
        return float((err * dt).sum() / span)
    v = velocities.reshape(x.shape).to(torch.float64)
    err = (v - mean_velocity).pow(2).sum(dim=2).mean(dim=1)  # (K+1,)
    return float((0.5 * (err[1:] + err[:-1]) * dt).sum() / span)


def _orientation(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Sign of the cross product (b - a) x (c - a): > 0 if c lies left of the line a -> b."""
    ab, ac = b - a, c - a
    return torch.sign(ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0])


def _properly_cross(p1: Tensor, q1: Tensor, p2: Tensor, q2: Tensor) -> Tensor:
    """Segments p1q1 and p2q2 (broadcast over leading dims, last dim 2) meet at one point interior to
    both: each segment's ends lie strictly on opposite sides of the other's line. Touching at an end,
    collinear overlaps and parallel segments do not count."""
    return (_orientation(p1, q1, p2) * _orientation(p1, q1, q2) < 0) & (
        _orientation(p2, q2, p1) * _orientation(p2, q2, q1) < 0
    )


def crossing_rate(
    x0: Tensor,
    x1: Tensor,
    max_pairs: int | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> float:
    """Share of pairs of straight segments x0_i -> x1_i, x0_j -> x1_j (i < j) that properly cross.

    x0, x1: (n, 2), 2-D couplings only. With `max_pairs` None (or at least n (n - 1) / 2) every one of
    the n (n - 1) / 2 pairs is tested, `chunk` rows at a time (n = 2000 takes well under a second);
    otherwise `max_pairs` pairs i != j are drawn uniformly with replacement using `generator`.
    """
    if x0.shape != x1.shape or x0.dim() != 2 or x0.shape[1] != 2:
        shapes = f"{tuple(x0.shape)} and {tuple(x1.shape)}"
        raise ValueError(f"crossing_rate takes 2-D couplings of shape (n, 2), got {shapes}")
    n = x0.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 segments to count crossings, got {n}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be None or a positive int, got {max_pairs}")
    p, q = x0.detach().cpu().to(torch.float64), x1.detach().cpu().to(torch.float64)
    total = n * (n - 1) // 2
    if max_pairs is not None and max_pairs < total:
        i = torch.randint(0, n, (max_pairs,), generator=generator)
        j = torch.randint(0, n - 1, (max_pairs,), generator=generator)
        j = j + (j >= i).long()  # uniform over j != i
        return float(_properly_cross(p[i], q[i], p[j], q[j]).double().mean())
    crossings = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # rows i in [start, stop) against columns j >= start; the mask keeps j > i, each pair once
        cross = _properly_cross(p[start:stop, None], q[start:stop, None], p[None, start:], q[None, start:])
        upper = torch.arange(start, stop)[:, None] < torch.arange(start, n)[None]
        crossings += int((cross & upper).sum())
    return crossings / total
