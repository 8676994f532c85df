"""Training-time distributions over t in [0, 1].

Each sampler is a frozen dataclass with ``sample(n, generator=None, device=None, dtype=None) -> (n,)``.
Draws happen on the generator's device (torch requires it), else on ``device``, and come back on ``device``
(see :mod:`straightflow.rng`): with the generator on ``device`` nothing crosses host <-> device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from straightflow.rng import rand, randn

__all__ = ["TimeSampler", "UniformTime", "LogitNormalTime", "GridTime", "TIME_SAMPLERS", "get_time_sampler"]


class TimeSampler:
    """A distribution over t in [0, 1] with ``sample(n, generator, device, dtype) -> (n,)``.

    The samplers here share one skeleton: t = times(z) for z of n i.i.d. draws, U[0, 1) or N(0, 1) (``noise``),
    so each says only how its times come from that noise. A sampler of your own needs only ``sample``.
    """

    noise = "uniform"  # "uniform": z ~ U[0, 1) (torch.rand); "normal": z ~ N(0, 1) (torch.randn)

    def times(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """n i.i.d. times, shape (n,)."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        draw = randn if self.noise == "normal" else rand
        return self.times(draw(n, generator, device, dtype))


@dataclass(frozen=True)
class UniformTime(TimeSampler):
    """t ~ U[0, 1) (torch.rand)."""

    def times(self, z: Tensor) -> Tensor:
        return z


@dataclass(frozen=True)
class LogitNormalTime(TimeSampler):
    """t = sigmoid(mean + std z), z ~ N(0, 1): logit(t) ~ N(mean, std^2) (Esser et al. 2024, Sec. 3.1).

    Puts more weight on intermediate times for mean = 0; density
    p(t) = exp(-(logit t - mean)^2 / (2 std^2)) / (std sqrt(2 pi) t (1 - t)); times lie in the open interval
    (0, 1) up to floating-point rounding.
    """

    mean: float = 0.0
    std: float = 1.0
    noise = "normal"

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")

    def times(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.mean + self.std * z)


@dataclass(frozen=True)
class GridTime(TimeSampler):
    """t uniform on the k-step Euler grid {0, 1/k, ..., (k-1)/k}: t = floor(k U) / k, U ~ U[0, 1).

    Rectified-flow distillation to k steps (Liu et al. 2023): flow matching on fixed pairs at these times
    only, so that k Euler steps carry x0 to x1; k = 1 is t = 0 always, i.e. min E |x1 - x0 - v(x0, 0)|^2.
    """

    steps: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"grid time sampler needs steps >= 1 (an int), got {self.steps!r}")

    def times(self, z: Tensor) -> Tensor:
        return torch.floor(z * self.steps).clamp_max(self.steps - 1) / self.steps


TIME_SAMPLERS: dict[str, type] = {"uniform": UniformTime, "logit_normal": LogitNormalTime, "grid": GridTime}


def get_time_sampler(name: str, **kwargs: float) -> TimeSampler:
    """Time sampler by name: "uniform", "logit_normal" (kwargs mean, std) or "grid" (kwarg steps)."""
    if name not in TIME_SAMPLERS:
        raise ValueError(f"unknown time sampler {name!r}; choose one of {sorted(TIME_SAMPLERS)}")
    return TIME_SAMPLERS[name](**kwargs)
