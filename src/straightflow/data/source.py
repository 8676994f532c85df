"""Where samples come from: a toy set, a data file, or the standard Gaussian.

All three speak one interface, :class:`DataSource`, so a flow can carry any source to any target
(noise-to-data by default, data-to-data when the source is itself a data set):

- ``.sample(n, generator)``: (n, *D) training samples;
- ``.heldout(n, seed)``: (n, *D) samples the training stream never sees, for metrics;
- ``.heldout_pair(n, seed)``: two independent held-out draws of n (a reference, and a second set that scores
  the noise floor against it); ``.max_heldout_pair`` is the largest such n (None: any);
- ``.log_prob(x)``: exact log-density (B,) where it is known, else NotImplementedError;
- ``.to(device)``: the source with the tensors its training draws index held on ``device`` (see
  :attr:`DataSource.draws_on_any_device`), so that draws with a generator there never leave the device.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from straightflow.data.files import VECTOR_SUFFIXES, load_vectors
from straightflow.data.toy import TOY_DATASETS, TOY_WITH_DENSITY, sample_toy, toy_dim, toy_log_prob
from straightflow.rng import randint, randn

__all__ = [
    "HELDOUT_SEED_OFFSET",
    "HELDOUT_FRACTION",
    "DataSource",
    "ToySource",
    "FileSource",
    "GaussianSource",
    "resolve_data",
    "resolve_source",
]

# Held-out draws of toy and Gaussian sources use the seed (seed + this offset) mod 2^32, so heldout(n, 0)
# never replays a training stream seeded with a small integer such as 0. The mod is explicit because
# torch's CPU generator keeps only the low 32 bits of a seed (seeds 0 and 2^32 give one stream).
HELDOUT_SEED_OFFSET = 0x5EED_0FF5
HELDOUT_FRACTION = 0.1


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples must be an int >= 0, got {n!r}")
    return n


def _heldout_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) + HELDOUT_SEED_OFFSET) % 2**32)


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


class ToySource(DataSource):
    """A toy set from :mod:`straightflow.data.toy` (2-D; 16-D for moons16d): every call draws fresh samples,
    on the CPU."""

    draws_on_any_device = False  # sample_toy is CPU code

    def __init__(self, name: str) -> None:
        if name not in TOY_DATASETS:
            raise ValueError(f"unknown data set '{name}'; choose from: {', '.join(TOY_DATASETS)}")
        self.name, self.shape = name, (toy_dim(name),)

    @property
    def has_log_prob(self) -> bool:
        return self.name in TOY_WITH_DENSITY

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return sample_toy(self.name, _check_count(n), generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """Fresh samples from a generator seeded with (seed + HELDOUT_SEED_OFFSET) mod 2^32."""
        return sample_toy(self.name, _check_count(n), _heldout_generator(seed))

    def log_prob(self, x: Tensor) -> Tensor:
        if not self.has_log_prob:
            return super().log_prob(x)
        return toy_log_prob(self.name, x)


class FileSource(DataSource):
    """A fixed set of N rows, split once: the last ceil(N / 10) rows are held out, the rest train.

    `sample` draws training rows uniformly with replacement. `heldout(n, seed)` returns n distinct
    held-out rows in a seeded random order when n <= the held-out count (all of them when equal), and
    draws held-out rows with replacement when n is larger. The split follows the row order of the file,
    so a file sorted by class should be shuffled first.
    """

    def __init__(self, rows: Tensor, name: str = "vectors") -> None:
        if rows.dim() != 2:
            raise ValueError(f"data rows must have shape (N, D), got {tuple(rows.shape)} for '{name}'")
        if rows.shape[0] < 2:
            raise ValueError(f"'{name}' has {rows.shape[0]} rows; need at least 2 to hold one out")
        n_held = math.ceil(HELDOUT_FRACTION * rows.shape[0])
        self.name, self.shape = name, (int(rows.shape[1]),)
        self.train_rows = rows[:-n_held].to(torch.float32)
        self.heldout_rows = rows[-n_held:].to(torch.float32)

    @classmethod
    def from_file(cls, path: str | Path) -> FileSource:
        return cls(load_vectors(path), name=str(path))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        index = randint(self.train_rows.shape[0], _check_count(n), generator, self.train_rows.device)
        return self.train_rows[index]

    def to(self, device: torch.device | str) -> FileSource:
        moved = copy.copy(self)
        moved.train_rows = self.train_rows.to(device)
        return moved

    @property
    def num_rows(self) -> int:
        """Training rows: the trainer walks them in epoch order (data.epochs.epoch_indices)."""
        return int(self.train_rows.shape[0])

    def rows(self, index: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        """(training rows at `index` (B,), no labels)."""
        return self.train_rows[index], None

    @property
    def max_heldout_pair(self) -> int:
        """Half the held-out rows: two disjoint halves are the only independent draws a finite set has."""
        return int(self.heldout_rows.shape[0]) // 2

    def heldout_pair(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Two disjoint sets of n held-out rows (a seeded random order split in two); n <= max_heldout_pair."""
        if _check_count(n) > self.max_heldout_pair:
            raise ValueError(f"n={n} is more than half of the {self.heldout_rows.shape[0]} held-out rows of "
                             f"'{self.name}'; use n <= {self.max_heldout_pair} (the noise floor needs two disjoint "
                             "held-out draws)")
        order = torch.randperm(self.heldout_rows.shape[0], generator=torch.Generator().manual_seed(int(seed)))
        return self.heldout_rows[order[:n]], self.heldout_rows[order[n:2 * n]]

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        generator = torch.Generator().manual_seed(int(seed))
        n_held = self.heldout_rows.shape[0]
        if _check_count(n) <= n_held:
            index = torch.randperm(n_held, generator=generator)[:n]
        else:
            index = torch.randint(0, n_held, (n,), generator=generator)
        return self.heldout_rows[index]


class GaussianSource(DataSource):
    """The standard normal N(0, I) on samples of shape D (an int for vectors, a tuple for images)."""

    def __init__(self, dim: int | Sequence[int]) -> None:
        shape = (dim,) if isinstance(dim, int) else tuple(dim)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"Gaussian dimension must be a positive int or a tuple of them, got {dim!r}")
        self.name, self.shape = "gaussian", shape

    @property
    def has_log_prob(self) -> bool:
        return True

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples (n, *shape), drawn on the generator's device (the CPU without one)."""
        return randn((_check_count(n), *self.shape), generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """Fresh samples from a generator seeded with (seed + HELDOUT_SEED_OFFSET) mod 2^32."""
        return torch.randn(_check_count(n), *self.shape, generator=_heldout_generator(seed))

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, I) = sum over all entries of (-x^2 / 2 - log(2 pi) / 2): (B, *D) -> (B,)."""
        if tuple(x.shape[1:]) != self.shape:
            want = ", ".join(map(str, self.shape))
            raise ValueError(f"expected points of shape (B, {want}), got {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * flat.pow(2).sum(dim=1) - 0.5 * math.log(2.0 * math.pi) * flat.shape[1]


def resolve_data(spec: str, **image_options) -> DataSource:
    """A toy set name (see TOY_DATASETS), a path to a .npy / .csv file of (N, D) vectors, or an image set.

    Image specs ("digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH") go to
    :func:`straightflow.data.images.resolve_images` with `image_options` (data_dir, image_size, conditional,
    hflip, dequantize); other specs ignore them.
    """
    if spec in TOY_DATASETS:
        return ToySource(spec)
    from straightflow.data.images import is_image_spec, resolve_images

    if is_image_spec(spec):
        return resolve_images(spec, **image_options)
    if Path(spec).suffix.lower() in VECTOR_SUFFIXES:
        return FileSource.from_file(spec)
    raise ValueError(
        f"unknown data '{spec}': name a toy set ({', '.join(TOY_DATASETS)}) "
        f"or a file ending in {' or '.join(VECTOR_SUFFIXES)}, or an image set (digits, mnist, fashion-mnist, "
        "cifar10, folder:PATH)"
    )


def resolve_source(spec: str, dim: int | Sequence[int]) -> DataSource:
    """The source distribution at t = 0 for data of dimension `dim`.

    "gaussian" gives N(0, I) of that shape; any other spec is resolved like data (data-to-data
    transport) and must have the same number of entries per sample.
    """
    if spec == "gaussian":
        return GaussianSource(dim)
    source = resolve_data(spec)
    want = dim if isinstance(dim, int) else math.prod(dim)
    if source.dim != want:
        raise ValueError(f"source '{spec}' has dimension {source.dim} but the data has dimension {want}")
    return source
