"""Random streams: where each draw happens, and the per-step generators that make training reproducible.

Where. torch draws with a generator on that generator's device and refuses any other, so a draw happens on
the generator's device when one is given and otherwise on the device that uses the result; the helpers
here then return it on that device. When the two are the same (as in the trainer) nothing is copied, so a
GPU run draws its times, label dropout, noise and data indices on the GPU with no host <-> device traffic.

Which. Every (seed, step, stream, rank) of training has its own generator, made on the device that uses it:
a step's draws depend on nothing that ran before, so a run resumed at step k draws what an unbroken run
would. A CPU run's numbers are those of CPU generators; a GPU run's are those of the GPU's generators
(another algorithm, so other numbers, but equally a pure function of (seed, step, stream, rank)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Device", "draw_device", "rand", "randn", "randint", "step_seed", "step_generator"]

Device = torch.device | str


def draw_device(generator: torch.Generator | None, device: Device | None) -> Device | None:
    """Where a draw happens: the generator's device when one is given (torch requires it), else `device`."""
    return generator.device if generator is not None else device


def _draw(sampler, shape: int | Sequence[int], generator: torch.Generator | None, device: Device | None,
          **kwargs) -> Tensor:
    """sampler(shape) on draw_device(generator, device), then on `device`: a no-op when drawn there already, a
    copy only when the caller's generator lives elsewhere."""
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    x = sampler(size, generator=generator, device=draw_device(generator, device), **kwargs)
    return x if device is None else x.to(device)


def rand(
    shape: int | Sequence[int], generator: torch.Generator | None = None, device: Device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """U[0, 1) of `shape`, drawn on draw_device(generator, device), returned on `device` (else where drawn)."""
    return _draw(torch.rand, shape, generator, device, dtype=dtype)


def randn(
    shape: int | Sequence[int], generator: torch.Generator | None = None, device: Device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """N(0, 1) of `shape`, drawn and returned as :func:`rand` is."""
    return _draw(torch.randn, shape, generator, device, dtype=dtype)


def randint(
    high: int, shape: int | Sequence[int], generator: torch.Generator | None = None, device: Device | None = None
) -> Tensor:
    """int64 uniform on {0, ..., high - 1} of `shape`, drawn and returned as :func:`rand` is."""
    return _draw(lambda size, **kw: torch.randint(0, high, size, **kw), shape, generator, device)


def step_seed(seed: int, step: int, stream: int, rank: int = 0) -> int:
    """The seed of stream `stream` (0..3) of rank `rank` at training step `step` of a run seeded `seed`."""
    return ((seed * 1_000_003 + step) * 4 + stream) * 65_537 + rank


def step_generator(seed: int, step: int, stream: int, rank: int = 0, device: Device = "cpu") -> torch.Generator:
    """A generator on `device` seeded by step_seed(seed, step, stream, rank).

    Making and seeding a generator is host-side work (no kernel, no sync), even for a GPU generator.
    """
    return torch.Generator(device=device).manual_seed(step_seed(seed, step, stream, rank))
