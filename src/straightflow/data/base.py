"""The interface every distribution straightflow draws from speaks: :class:`DataSource`.

It lives below both families of sources (:mod:`straightflow.data.source`: toy sets, vector files, the
Gaussian; :mod:`straightflow.data.images`: image sets), so that neither has to import the other.

- ``.sample(n, generator)``: (n, *D) training samples;
- ``.heldout(n, seed)``: (n, *D) samples the training stream never sees, for metrics;
- ``.heldout_pair(n, seed)``: two independent held-out draws of n (a reference, and a second set that scores
  the noise floor against it); ``.max_heldout_pair`` is the largest such n (None: any);
- ``.log_prob(x)``: exact log-density (B,) where it is known, else NotImplementedError;
- ``.to(device)``: the source with the tensors its training draws index held on ``device`` (see
  :attr:`DataSource.draws_on_any_device`), so that draws with a generator there never leave the device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["HELDOUT_SEED_OFFSET", "DataSource", "check_count", "error_reason", "heldout_index", "heldout_generator"]

# Held-out draws of toy and Gaussian sources use the seed (seed + this offset) mod 2^32, so heldout(n, 0)
# never replays a training stream seeded with a small integer such as 0. The mod is explicit because
# torch's CPU generator keeps only the low 32 bits of a seed (seeds 0 and 2^32 give one stream).
HELDOUT_SEED_OFFSET = 0x5EED_0FF5


def check_count(n: int) -> int:
    """n itself when it is a valid number of samples (an int >= 0), else a one-line ValueError."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples must be an int >= 0, got {n!r}")
    return n


def heldout_generator(seed: int) -> torch.Generator:
    """The CPU generator of held-out draws: seeded with (seed + HELDOUT_SEED_OFFSET) mod 2^32."""
    return torch.Generator().manual_seed((int(seed) + HELDOUT_SEED_OFFSET) % 2**32)


def error_reason(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a reader's one-line
    error says of a file it could not parse."""
    return (str(err).splitlines() or [type(err).__name__])[0]


def heldout_index(n_held: int, n: int, generator: torch.Generator) -> Tensor:
    """Indices (n,) into n_held held-out rows: distinct, in the generator's random order, when n <= n_held (all
    of them when equal); drawn with replacement when n is larger."""
    if check_count(n) <= n_held:
        return torch.randperm(n_held, generator=generator)[:n]
    return torch.randint(0, n_held, (n,), generator=generator)


class DataSource(ABC):
    """A distribution to draw from. `shape` is one sample's shape D; `dim` is its number of entries."""

    name: str
    shape: tuple[int, ...]
    # Whether training draws can happen on any device (the generator's) once `to(device)` has moved the
    # tensors they index; False where samples are made by CPU code.
    draws_on_any_device: bool = True

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def has_log_prob(self) -> bool:
        """Whether :meth:`log_prob` is exact here (and does not raise NotImplementedError)."""
        return False

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n training samples, (n, *shape) float32."""

    @abstractmethod
    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """n held-out samples, (n, *shape) float32, a deterministic function of (n, seed)."""

    max_heldout_pair: int | None = None  # largest n with two independent held-out draws of n; None: any n

    def heldout_pair(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """(reference, second): two independent held-out draws of n, (n, *shape) each.

        A model's samples are scored against the reference; the second set, scored the same way, is the noise
        floor: what fresh data would score. Sources that draw fresh samples use two seeds.
        """
        return self.heldout(n, seed), self.heldout(n, seed + 1000)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density at x: (B, *shape) -> (B,)."""
        raise NotImplementedError(f"the density of data source '{self.name}' is unknown")

    def to(self, device: torch.device | str) -> DataSource:
        """This source with the tensors its training draws index on `device`; held-out rows stay on the CPU,
        where metrics read them. A source that holds no tensors (a Gaussian) returns itself."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shape={self.shape})"
