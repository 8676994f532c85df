"""Where samples come from: a toy set, a data file, or the standard Gaussian, and the resolver of data specs.

All speak one interface, :class:`~straightflow.data.base.DataSource` (see there), so a flow can carry any
source to any target (noise-to-data by default, data-to-data when the source is itself a data set).
:func:`resolve_data` turns a ``data.data`` spec into a source: a toy set, a vector file, or an image set
(:mod:`straightflow.data.images`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from straightflow.data.base import HELDOUT_SEED_OFFSET, DataSource, check_count, heldout_generator
from straightflow.data.files import VECTOR_SUFFIXES, load_vectors
from straightflow.data.images import IMAGE_DATASETS, is_image_spec, resolve_images
from straightflow.data.tensors import HELDOUT_FRACTION, TensorSource
from straightflow.data.toy import TOY_DATASETS, TOY_WITH_DENSITY, sample_toy, toy_dim, toy_log_prob
from straightflow.rng import randn

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
        return sample_toy(self.name, check_count(n), generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """Fresh samples from a generator seeded with (seed + HELDOUT_SEED_OFFSET) mod 2^32."""
        return sample_toy(self.name, check_count(n), heldout_generator(seed))

    def log_prob(self, x: Tensor) -> Tensor:
        if not self.has_log_prob:
            return super().log_prob(x)
        return toy_log_prob(self.name, x)


class FileSource(TensorSource):
    """A file's (N, D) rows, split once like any :class:`~straightflow.data.tensors.TensorSource`: the last
    ceil(N / 10) rows are held out, the rest train. The split follows the row order of the file, so a file
    sorted by class should be shuffled first."""

    def __init__(self, rows: Tensor, name: str = "vectors") -> None:
        if rows.dim() != 2:
            raise ValueError(f"data rows must have shape (N, D), got {tuple(rows.shape)} for '{name}'")
        super().__init__(rows, name=name)

    @classmethod
    def from_file(cls, path: str | Path) -> FileSource:
        return cls(load_vectors(path), name=str(path))


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
        return randn((check_count(n), *self.shape), generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """Fresh samples from a generator seeded with (seed + HELDOUT_SEED_OFFSET) mod 2^32."""
        return torch.randn(check_count(n), *self.shape, generator=heldout_generator(seed))

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, I) = sum over all entries of (-x^2 / 2 - log(2 pi) / 2): (B, *D) -> (B,)."""
        if tuple(x.shape[1:]) != self.shape:
            want = ", ".join(map(str, self.shape))
            raise ValueError(f"expected points of shape (B, {want}), got {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * flat.pow(2).sum(dim=1) - 0.5 * math.log(2.0 * math.pi) * flat.shape[1]


def resolve_data(spec: str, **image_options) -> DataSource:
    """A toy set name (see TOY_DATASETS), a path to a .npy / .csv file of (N, D) vectors, or an image set.

    Image specs ("digits", "digits-thin", "digits-bold", "mnist", "fashion-mnist", "cifar10", "folder:PATH") go to
    :func:`straightflow.data.images.resolve_images` with `image_options` (data_dir, image_size, conditional,
    hflip, dequantize); other specs ignore them.
    """
    if spec in TOY_DATASETS:
        return ToySource(spec)
    if is_image_spec(spec):
        return resolve_images(spec, **image_options)
    if Path(spec).suffix.lower() in VECTOR_SUFFIXES:
        return FileSource.from_file(spec)
    raise ValueError(
        f"unknown data '{spec}': name a toy set ({', '.join(TOY_DATASETS)}) "
        f"or a file ending in {' or '.join(VECTOR_SUFFIXES)}, or an image set ({', '.join(IMAGE_DATASETS)}, "
        "folder:PATH)"
    )


def resolve_source(spec: str, dim: int | Sequence[int], **image_options) -> DataSource:
    """The source distribution at t = 0 for data of shape `dim` (an int: vectors of that many entries).

    "gaussian" gives N(0, I) of that shape; any other spec is resolved like data (data-to-data transport) and
    must have the data's sample shape. An image set as source (image-to-image translation) is read with the
    data's `image_options` (data_dir, image_size, hflip; see resolve_data), never conditional nor dequantised
    (its labels serve evaluation only), and is never resized: its (C, H, W) must equal the data's, which any
    two folder:PATH sets do at one data.image_size.
    """
    if spec == "gaussian":
        return GaussianSource(dim)
    source = resolve_data(spec, **{**image_options, "conditional": False, "dequantize": False})
    want = (dim,) if isinstance(dim, int) else tuple(dim)
    if tuple(source.shape) == want:
        return source
    if len(want) == 1 and len(source.shape) == 1:
        raise ValueError(f"source '{spec}' has dimension {source.dim} but the data has dimension {want[0]}")
    raise ValueError(f"source '{spec}' has samples of shape {tuple(source.shape)} but the data {want}; a flow "
                     "between two sets needs one shape (folder:PATH sets are resized to data.image_size)")
