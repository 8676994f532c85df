"""Sampling with an average-velocity field: one network call per jump, no ODE solve.

With u(x, s, t) the mean velocity over [s, t] (x at time s), the exact flow map is
    x_t = x_s + (t - s) u(x_s, s, t),
so a grid 0 = tau_0 < ... < tau_k = 1 gives a k-step sampler with NFE = k, and k = 1 is one-step
generation x1 = x0 + u(x0, 0, 1). For an exact u every k gives the same x1; for a learned u, more steps
trade NFE for accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from straightflow.solvers.integrate import ODESolution, _check_grid, time_grid
from straightflow.types import AverageVelocityField, broadcast_time

__all__ = ["average_velocity_sample"]


def average_velocity_sample(
    u: AverageVelocityField,
    x0: Tensor,
    steps: int = 1,
    grid: Tensor | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """x <- x + (t_next - t) u(x, t, t_next) over a uniform grid of `steps` jumps (or the given grid).

    x0: (B, *D). Returns ODESolution with nfe = number of jumps; trajectory (k+1, B, *D) if asked.
    """
    times = _check_grid(grid) if grid is not None else time_grid(steps).tolist()
    b = x0.shape[0]
    x, traj = x0, [x0]
    for ta, tb in zip(times[:-1], times[1:], strict=True):
        s = torch.full((b,), ta, dtype=x0.dtype, device=x0.device)
        t = torch.full((b,), tb, dtype=x0.dtype, device=x0.device)
        x = x + broadcast_time(t - s, x) * u(x, s, t)
        if return_trajectory:
            traj.append(x)
    return ODESolution(
        x=x,
        nfe=len(times) - 1,
        trajectory=torch.stack(traj) if return_trajectory else None,
        times=torch.tensor(times, dtype=x0.dtype, device=x0.device) if return_trajectory else None,
    )
