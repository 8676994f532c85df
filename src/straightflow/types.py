"""Shape conventions and the two field protocols every part of straightflow speaks.

Time convention (the only one in this project): t = 0 is the source (noise), t = 1 the target (data).
The linear path is x_t = (1 - t) x0 + t x1. A velocity field v(x, t) moves points forward in t.
MeanFlow's average velocity u(x, s, t) takes the point x at time s to time t:
x_t = x_s + (t - s) u(x_s, s, t), and u(x, t, t) = v(x, t).

Shapes: x is (B, *D) (a batch of vectors (B, D) or images (B, C, H, W)); every time argument is a (B,)
tensor, never a Python float, and it is broadcast against x by :func:`broadcast_time` alone.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class VelocityField(Protocol):
    """v(x, t): x (B, *D), t (B,) -> (B, *D)."""

    def __call__(self, x: Tensor, t: Tensor) -> Tensor: ...


class AverageVelocityField(Protocol):
    """u(x, s, t): x (B, *D) at time s, s (B,), t (B,) -> (B, *D), the mean of v over [s, t]."""

    def __call__(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor: ...


def broadcast_time(t: Tensor, x: Tensor) -> Tensor:
    """View a (B,) time tensor as (B, 1, ..., 1) so that it broadcasts against x: (B, *D)."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


def full_time(value: float, x: Tensor) -> Tensor:
    """A (B,) tensor filled with `value`, on x's device and dtype."""
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)
