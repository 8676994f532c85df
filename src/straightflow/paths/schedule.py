"""Schedulers (alpha_t, sigma_t) for affine Gaussian probability paths.

An affine path interpolates a source sample x0 ~ N(0, I) (t = 0) and a target sample x1 (t = 1):

    x_t = alpha_t x1 + sigma_t x0,        dx_t/dt = alpha'_t x1 + sigma'_t x0,

with alpha_0 ~ 0, sigma_0 ~ 1 and alpha_1 ~ 1, sigma_1 ~ 0. A scheduler maps a (B,) time tensor to the four
(B,) tensors (alpha, sigma, d_alpha, d_sigma). Every scheduler here has alpha, sigma >= 0, d_alpha >= 0,
d_sigma <= 0, so the Wronskian-like quantity d_alpha * sigma - alpha * d_sigma that the parameterisation
conversions in :mod:`straightflow.paths.affine` divide by is strictly positive on [0, 1).

References: Lipman et al., "Flow Matching for Generative Modeling" (ICLR 2023), eqs. 18-22; Song et al.,
"Score-Based Generative Modeling through SDEs" (ICLR 2021) for the VP process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

__all__ = [
    "SchedulerOutput",
    "Scheduler",
    "LinearScheduler",
    "CondOTScheduler",
    "VPScheduler",
    "CosineScheduler",
    "SCHEDULERS",
    "get_scheduler",
]


@dataclass(frozen=True)
class SchedulerOutput:
    """alpha_t, sigma_t and their time derivatives, each (B,)."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


class Scheduler(Protocol):
    """Maps t: (B,) to :class:`SchedulerOutput` with (B,) fields."""

    def __call__(self, t: Tensor) -> SchedulerOutput: ...


def _check_time(t: Tensor) -> None:
    if t.dim() != 1:
        raise ValueError(f"time must be a (B,) tensor, got shape {tuple(t.shape)}")


@dataclass(frozen=True)
class LinearScheduler:
    """The rectified-flow / linear path: alpha_t = t, sigma_t = 1 - t.

    x_t = t x1 + (1 - t) x0 and dx_t/dt = x1 - x0 (constant in t). This is CondOT with sigma_min = 0.
    """

    def __call__(self, t: Tensor) -> SchedulerOutput:
        _check_time(t)
        return SchedulerOutput(alpha=t, sigma=1 - t, d_alpha=torch.ones_like(t), d_sigma=-torch.ones_like(t))


@dataclass(frozen=True)
class CondOTScheduler:
    """Conditional optimal-transport path of Lipman et al. (2023), eqs. 20-22.

    mu_t(x1) = t x1 and sigma_t = 1 - (1 - sigma_min) t, so

        alpha_t = t,  sigma_t = 1 - (1 - sigma_min) t,  alpha'_t = 1,  sigma'_t = -(1 - sigma_min),

    and the conditional velocity (eq. 21 in this parameterisation) is x1 - (1 - sigma_min) x0.
    At t = 1 the path ends at x1 + sigma_min x0, a Gaussian of std sigma_min around x1.
    """

    sigma_min: float = 1e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must lie in [0, 1), got {self.sigma_min}")

    def __call__(self, t: Tensor) -> SchedulerOutput:
        _check_time(t)
        c = 1.0 - self.sigma_min
        return SchedulerOutput(
            alpha=t, sigma=1 - c * t, d_alpha=torch.ones_like(t), d_sigma=torch.full_like(t, -c)
        )


@dataclass(frozen=True)
class VPScheduler:
    """Variance-preserving (Song et al. 2021) path as written by Lipman et al. (2023), eqs. 18-19.

    With beta(s) = beta_min + s (beta_max - beta_min) and T(s) = int_0^s beta = s beta_min + s^2/2
    (beta_max - beta_min), the diffusion's signal coefficient at diffusion time s is exp(-T(s)/2). The
    diffusion runs data -> noise, so our time is t = 1 - s (Lipman et al.'s alpha_{1-t}):

        alpha_t   = exp(-T(1 - t) / 2),
        sigma_t   = sqrt(1 - alpha_t^2),
        alpha'_t  = alpha_t * beta(1 - t) / 2           (chain rule: d/dt T(1 - t) = -beta(1 - t)),
        sigma'_t  = -alpha_t alpha'_t / sigma_t         (from alpha^2 + sigma^2 = 1).

    alpha_0 = exp(-(beta_min + beta_max) / 4) (about 6.6e-3 for the defaults), so x_0 is only
    approximately pure noise. At t = 1, sigma_t = 0 and sigma'_t -> -inf: the path is singular there,
    so train and sample on t < 1.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta_min <= self.beta_max or self.beta_max <= 0.0:
            raise ValueError(
                f"need 0 <= beta_min <= beta_max and beta_max > 0, got beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}"
            )

    def big_t(self, s: Tensor) -> Tensor:
        """T(s) = s beta_min + s^2 / 2 (beta_max - beta_min), the integrated noise rate; s: (B,)."""
        return s * self.beta_min + 0.5 * s**2 * (self.beta_max - self.beta_min)

    def __call__(self, t: Tensor) -> SchedulerOutput:
        _check_time(t)
        s = 1 - t
        big_t = self.big_t(s)
        alpha = torch.exp(-0.5 * big_t)
        # 1 - alpha^2 = -expm1(-T): expm1 keeps full precision near t = 1 where alpha^2 -> 1.
        sigma = torch.sqrt(-torch.expm1(-big_t))
        beta = self.beta_min + s * (self.beta_max - self.beta_min)
        d_alpha = 0.5 * alpha * beta
        d_sigma = -alpha * d_alpha / sigma
        return SchedulerOutput(alpha=alpha, sigma=sigma, d_alpha=d_alpha, d_sigma=d_sigma)


@dataclass(frozen=True)
class CosineScheduler:
    """Trigonometric path: alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2) (alpha^2 + sigma^2 = 1).

    alpha'_t = (pi/2) cos(pi t / 2), sigma'_t = -(pi/2) sin(pi t / 2).
    """

    def __call__(self, t: Tensor) -> SchedulerOutput:
        _check_time(t)
        half_pi = 0.5 * math.pi
        sin, cos = torch.sin(half_pi * t), torch.cos(half_pi * t)
        return SchedulerOutput(alpha=sin, sigma=cos, d_alpha=half_pi * cos, d_sigma=-half_pi * sin)


SCHEDULERS: dict[str, type] = {
    "linear": LinearScheduler,
    "condot": CondOTScheduler,
    "vp": VPScheduler,
    "cosine": CosineScheduler,
}


def get_scheduler(name: str, **kwargs: float) -> Scheduler:
    """Build a scheduler by name: one of "linear", "condot", "vp", "cosine"; kwargs go to its constructor."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    return SCHEDULERS[name](**kwargs)
