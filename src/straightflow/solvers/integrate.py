"""Integrate dx/dt = v(x, t) from t0 to t1 with a fixed-step Runge-Kutta method or adaptive dopri5.

v: (x (B, *D), t (B,)) -> (B, *D). Integration runs under the caller's grad mode, so gradients flow
through the solve when enabled (wrap calls in ``torch.no_grad()`` for sampling). Fixed-step solvers never
read tensors back to the host inside the loop: step times are Python floats fixed before the loop and the
NFE is steps * nfe_per_step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from straightflow.solvers.steppers import STEPPERS
from straightflow.types import VelocityField

__all__ = ["ODESolution", "SOLVERS", "time_grid", "check_grid", "odeint"]

SOLVERS: tuple[str, ...] = (*STEPPERS, "dopri5")


@dataclass(frozen=True)
class ODESolution:
    """x (B, *D) at t1; nfe = evaluations of v; trajectory (K+1, B, *D) and times (K+1,) if requested."""

    x: Tensor
    nfe: int
    trajectory: Tensor | None
    times: Tensor | None


def time_grid(
    steps: int,
    t0: float = 0.0,
    t1: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform grid t0 = tau_0 < ... < tau_steps = t1 (decreasing if t1 < t0); shape (steps + 1,)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    return torch.linspace(float(t0), float(t1), steps + 1, dtype=dtype, device=device)


def check_grid(grid: Tensor) -> list[float]:
    """The grid as Python floats (one host read, before any integration); must be strictly monotone."""
    if grid.dim() != 1 or grid.shape[0] < 2:
        raise ValueError(f"grid must be a 1-D tensor with at least 2 times, got shape {tuple(grid.shape)}")
    times = grid.detach().to("cpu", torch.float64).tolist()
    diffs = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    if not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise ValueError(f"grid must be strictly increasing or strictly decreasing, got {times}")
    return times


_check_grid = check_grid  # the name solvers.one_step imports


def _fixed_step(
    v: VelocityField, x0: Tensor, solver: str, times: list[float], keep: bool, progress: bool
) -> tuple[Tensor, int, list[Tensor]]:
    stepper = STEPPERS[solver]
    x, traj = x0, [x0]
    pairs = list(zip(times[:-1], times[1:], strict=True))
    if progress:
        from straightflow.progress import progress as reporter

        pairs = reporter(pairs, desc=f"odeint[{solver}]", unit="step")
    b = x0.shape[0]
    for ta, tb in pairs:
        t = torch.full((b,), ta, dtype=x0.dtype, device=x0.device)
        h = torch.full((b,), tb - ta, dtype=x0.dtype, device=x0.device)
        x = stepper(v, x, t, h)
        if keep:
            traj.append(x)
    return x, stepper.nfe * (len(times) - 1), traj


def _dopri5(
    v: VelocityField, x0: Tensor, times: list[float], rtol: float, atol: float
) -> tuple[Tensor, int]:
    """Adaptive Dormand-Prince 5(4) via torchdiffeq; returns (x at every time, (K+1, B, *D)) and the NFE."""
    import torchdiffeq

    nfe = 0
    b = x0.shape[0]

    def func(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1  # counted in Python: torchdiffeq calls func once per evaluation, including step rejections
        return v(x, t.to(x.dtype).expand(b))  # 0-dim t -> (B,) without a host read

    t_eval = torch.tensor(times, dtype=x0.dtype, device=x0.device)
    xs = torchdiffeq.odeint(func, x0, t_eval, rtol=rtol, atol=atol, method="dopri5")
    return xs, nfe


def odeint(
    v: VelocityField,
    x0: Tensor,
    solver: str = "euler",
    steps: int = 8,
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    grid: Tensor | None = None,
    progress: bool = False,
) -> ODESolution:
    """Solve dx/dt = v(x, t), x(t0) = x0 (B, *D), and return x(t1).

    solver: "euler", "midpoint", "heun", "rk4" (fixed steps on the grid) or "dopri5" (adaptive, rtol/atol;
    the grid only fixes where the trajectory is reported). The grid is ``time_grid(steps, t0, t1)`` unless
    ``grid`` (a strictly monotone 1-D tensor, possibly non-uniform) is given, which then replaces steps,
    t0 and t1. t1 < t0 integrates backward. NFE: steps * {euler: 1, midpoint: 2, heun: 2, rk4: 4} for the
    fixed-step solvers; the counted number of v calls for dopri5. With return_trajectory, trajectory is
    (K+1, B, *D) at times (K+1,) with trajectory[0] = x0 and trajectory[-1] = x; otherwise both are None.
    ``progress`` reports the steps of fixed-step solvers (straightflow.progress).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    if not rtol > 0 or not atol > 0:
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    if x0.dim() < 1:
        raise ValueError("x0 must be (B, *D), got a 0-dim tensor")
    times = check_grid(grid) if grid is not None else time_grid(steps, t0, t1).tolist()

    if solver == "dopri5":
        span = times if return_trajectory else [times[0], times[-1]]
        xs, nfe = _dopri5(v, x0, span, rtol, atol)
        x, traj = xs[-1], (xs if return_trajectory else None)
    else:
        x, nfe, traj_list = _fixed_step(v, x0, solver, times, return_trajectory, progress)
        traj = torch.stack(traj_list) if return_trajectory else None

    out_times = torch.tensor(times, dtype=x0.dtype, device=x0.device) if return_trajectory else None
    return ODESolution(x=x, nfe=nfe, trajectory=traj, times=out_times)
