"""Affine Gaussian probability paths x_t = alpha_t x1 + sigma_t x0 and conversions between predictions.

A network on an affine path may predict the velocity v, the data x1 or the noise x0; given the current
point x_t any one determines the other two. With a = alpha_t, s = sigma_t, a' = d alpha/dt, s' = d sigma/dt:

    x_t = a x1 + s x0,        v = a' x1 + s' x0.

Solving this 2x2 linear system with determinant D = a' s - a s' gives

    x1 = (s v - s' x_t) / D,              x0 = (a' x_t - a v) / D,
    v  = (s' x_t + D x1) / s   (from x1),  v  = (a' x_t - D x0) / a   (from x0).

D > 0 for every scheduler in :mod:`straightflow.paths.schedule` (D = 1 for linear and CondOT, pi/2 for
cosine, a'/s for VP); the x1 -> v conversion divides by s, which vanishes at t = 1 (except CondOT with
sigma_min > 0), and x0 -> v divides by a, which vanishes at t = 0. These divisions are guarded by clamping
the (non-negative) denominator to at least ``_EPS`` so that the endpoints give large finite numbers instead
of inf/nan; the results there are meaningless and callers should keep t away from the singular end.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from straightflow.paths.schedule import Scheduler, SchedulerOutput
from straightflow.types import broadcast_time

__all__ = ["PathSample", "AffinePath"]

# Floor for denominators that are >= 0 on [0, 1] but reach 0 at an endpoint (see module docstring).
_EPS = 1e-12


@dataclass(frozen=True)
class PathSample:
    """A point on the conditional path: x_t, dx_t (B, *D) = conditional target velocity, t (B,), x0, x1."""

    x_t: Tensor
    dx_t: Tensor
    t: Tensor
    x0: Tensor
    x1: Tensor


def _coefficients(sched: SchedulerOutput, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(a, s, a', s') each viewed as (B, 1, ..., 1) against x."""
    return tuple(broadcast_time(c, x) for c in (sched.alpha, sched.sigma, sched.d_alpha, sched.d_sigma))


def _check(x: Tensor, t: Tensor, name: str) -> None:
    if t.dim() != 1 or x.dim() < 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be (B, *D) with t of shape (B,), got {tuple(x.shape)} and {tuple(t.shape)}"
        )


class AffinePath:
    """The path x_t = alpha_t x1 + sigma_t x0 defined by a scheduler (see :mod:`.schedule`).

    Holds only the scheduler; every method is a pure function of its arguments.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __repr__(self) -> str:
        return f"AffinePath({self.scheduler!r})"

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """x_t = alpha_t x1 + sigma_t x0 and its conditional velocity dx_t = alpha'_t x1 + sigma'_t x0.

        x0, x1: (B, *D); t: (B,). (Lipman et al. 2023, eqs. 10-15: dx_t is the regression target of the
        conditional flow-matching loss.)
        """
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        _check(x1, t, "x1")
        a, s, da, ds = _coefficients(self.scheduler(t), x1)
        return PathSample(x_t=a * x1 + s * x0, dx_t=da * x1 + ds * x0, t=t, x0=x0, x1=x1)

    def velocity_to_x1(self, v: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """x1 = (s v - s' x_t) / (a' s - a s'); v, x_t: (B, *D), t: (B,)."""
        _check(x_t, t, "x_t")
        a, s, da, ds = _coefficients(self.scheduler(t), x_t)
        return (s * v - ds * x_t) / (da * s - a * ds).clamp_min(_EPS)

    def velocity_to_x0(self, v: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """x0 = (a' x_t - a v) / (a' s - a s'); v, x_t: (B, *D), t: (B,)."""
        _check(x_t, t, "x_t")
        a, s, da, ds = _coefficients(self.scheduler(t), x_t)
        return (da * x_t - a * v) / (da * s - a * ds).clamp_min(_EPS)

    def x1_to_velocity(self, x1_hat: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """v = (s' x_t + (a' s - a s') x1) / s, i.e. a' x1 + s' x0 with x0 = (x_t - a x1) / s.

        Singular at sigma_t = 0 (t = 1 for all schedules but CondOT with sigma_min > 0).
        """
        _check(x_t, t, "x_t")
        a, s, da, ds = _coefficients(self.scheduler(t), x_t)
        return (ds * x_t + (da * s - a * ds) * x1_hat) / s.clamp_min(_EPS)

    def x0_to_velocity(self, x0_hat: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """v = (a' x_t - (a' s - a s') x0) / a, i.e. a' x1 + s' x0 with x1 = (x_t - s x0) / a.

        This is the noise-prediction (epsilon) parameterisation; singular at alpha_t = 0 (t = 0).
        """
        _check(x_t, t, "x_t")
        a, s, da, ds = _coefficients(self.scheduler(t), x_t)
        return (da * x_t - (da * s - a * ds) * x0_hat) / a.clamp_min(_EPS)
