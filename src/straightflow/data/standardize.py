"""Per-feature standardisation of vector data: the model trains on z, users see x.

    z = (x - mean) / std,      x = z * std + mean,      log p_x(x) = log p_z(z) - sum_d log std_d

mean, std (D,) are the per-feature mean and (population) standard deviation of the training rows; a
constant feature gets std 1. A run stores them in its checkpoint metadata as

    meta["data_transform"] = {"kind": "standardize", "mean": [D floats], "std": [D floats]}

and every sample a user or a metric sees is mapped back with :meth:`Standardize.inverse`, so distances
(W2, MMD) are reported in the data's own units. ``data.standardize`` chooses: "auto" (on for vector data
read from files, whose scale is unknown; off for the built-in toy sets and for images, whose scale is
known), "on" or "off".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "STANDARDIZE_MODES", "Standardize", "StandardizedData", "wants_standardize", "transform_from_meta", "resolve_mode",
    "run_transform", "fit_source", "scale_warning",
]

STANDARDIZE_MODES = ("auto", "on", "off")
_STAT_DRAWS = 10_000  # samples that estimate the statistics of a source without rows (a toy set, "on")


@dataclass(frozen=True)
class Standardize:
    """z = (x - mean) / std per feature; mean, std (D,) float32, std > 0."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, rows: Tensor) -> Standardize:
        """Statistics of rows (N, D), computed in float64; a constant feature (std 0) gets std 1."""
        if rows.dim() != 2 or rows.shape[0] < 1:
            raise ValueError(f"standardisation needs rows of shape (N, D) with N >= 1, got {tuple(rows.shape)}")
        x = rows.detach().cpu().double()
        mean, std = x.mean(0), x.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def forward(self, x: Tensor) -> Tensor:
        """Data units -> model units: (B, D) -> (B, D) (any leading dims)."""
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        """Model units -> data units: (..., D) -> (..., D)."""
        return z * self.std.to(z.device, z.dtype) + self.mean.to(z.device, z.dtype)

    @property
    def log_det_inverse(self) -> float:
        """log |det d x / d z| = sum_d log std_d: log p_x(x) = log p_z(z) - this."""
        return float(self.std.double().log().sum())

    def to_meta(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean.tolist(), "std": self.std.tolist()}


def transform_from_meta(meta: Any, where: str = "checkpoint") -> Standardize | None:
    """The transform stored as meta["data_transform"] (see the module docstring), None when absent; a
    malformed entry is a one-line ValueError naming `where`."""
    if meta is None:
        return None
    bad = ValueError(f"{where} has a malformed data_transform (expected kind 'standardize' with equal-length "
                     "lists mean and std, std > 0)")
    if not isinstance(meta, dict) or meta.get("kind") != "standardize":
        raise bad
    mean, std = meta.get("mean"), meta.get("std")
    if not isinstance(mean, list) or not isinstance(std, list) or len(mean) != len(std) or not mean:
        raise bad
    try:
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise bad from None
    if not (torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all()):
        raise bad
    return Standardize(m, s)


def wants_standardize(mode: str, data: Any) -> bool:
    """Whether `data` (a data source) is standardised under data.standardize = `mode`."""
    from straightflow.data.source import FileSource

    if mode not in STANDARDIZE_MODES:
        raise ValueError(f"unknown data.standardize {mode!r}; choose from: {', '.join(STANDARDIZE_MODES)}")
    vectors = len(getattr(data, "shape", ())) == 1
    if mode == "on" and not vectors:
        raise ValueError(f"data.standardize=on is for vector data; '{data.name}' holds samples of shape "
                         f"{tuple(data.shape)} (images are scaled to [-1, 1] already); use auto or off")
    return mode == "on" or (mode == "auto" and isinstance(data, FileSource))


def resolve_mode(mode: str, data: Any, saved: str | None = None) -> str:
    """data.standardize resolved to "on" or "off" for `data`: a resumed run keeps its `saved` mode."""
    if mode == "auto" and saved is not None:
        return saved
    return "on" if wants_standardize(mode, data) else "off"


def run_transform(cfg: Any, data: Any, saved_meta: dict[str, Any] | None, where: str) -> Standardize | None:
    """The standardisation a run of `cfg` (data.standardize resolved) trains under, or None.

    A resumed run keeps its own (`saved_meta`, its checkpoint's metadata, read from `where`). A run on fixed pairs
    (data.pairs) or with a teacher (method.teacher) must work in the coordinates those were made in: the pairs
    manifest's, or the teacher's. Otherwise a run started from another (train.init_from) keeps that run's
    statistics when it has some, and any other run fits them to `data`'s training rows."""
    from straightflow.training.checkpoint import checkpoint_file, read_meta

    if saved_meta is not None:
        return transform_from_meta(saved_meta.get("data_transform"), where)
    on = cfg.data.standardize == "on"
    fixed_by = None
    if cfg.data.pairs:
        from straightflow.data.pairs import MANIFEST, read_manifest

        fixed_by = f"{cfg.data.pairs}/{MANIFEST}"
        fixed = transform_from_meta(read_manifest(cfg.data.pairs).get("data_transform"), fixed_by)
    elif cfg.method.teacher:
        fixed_by = str(checkpoint_file(cfg.method.teacher))
        fixed = transform_from_meta(read_meta(fixed_by).get("data_transform"), fixed_by)
    if fixed_by is not None:
        if (fixed is not None) != on:
            made = "standardised" if fixed is not None else "unstandardised"
            raise ValueError(f"data.standardize={cfg.data.standardize}, but {fixed_by} was made on {made} data; "
                             f"set data.standardize={'on' if fixed is not None else 'off'}")
        return fixed
    if not on:
        warning = scale_warning(data)
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=3)
        return None
    if cfg.train.init_from:
        parent = checkpoint_file(cfg.train.init_from)
        inherited = transform_from_meta(read_meta(parent).get("data_transform"), str(parent))
        if inherited is not None and inherited.mean.shape == (data.dim,):
            return inherited
    return fit_source(data)


def fit_source(data: Any) -> Standardize:
    """Statistics of a data source: its training rows where it has them, else a fixed draw of samples."""
    rows = getattr(data, "train_rows", None)
    if rows is None:
        rows = data.sample(_STAT_DRAWS, torch.Generator().manual_seed(0))
    return Standardize.fit(rows.reshape(rows.shape[0], -1))


def scale_warning(data: Any) -> str | None:
    """A warning when unstandardised vector rows lie on a scale far from 1 (std outside [1e-2, 1e2])."""
    rows = getattr(data, "train_rows", None)
    if rows is None or rows.dim() != 2:
        return None
    std = float(rows.double().std(0, unbiased=False).max())
    if 1e-2 <= std <= 1e2 or math.isnan(std):
        return None
    return (f"data '{data.name}' has a largest per-feature std of {std:.3g} and data.standardize is off: the "
            "source N(0, I) is far from its scale; set data.standardize=auto to train on standardised features")


class StandardizedData:
    """A data source whose training draws (`sample`, `sample_labeled`, `rows`) come out standardised;
    every other attribute (shape, dim, num_classes, num_rows, ...) is the wrapped source's."""

    def __init__(self, base: Any, transform: Standardize) -> None:
        self.base, self.transform = base, transform

    def __getattr__(self, name: str) -> Any:
        base = self.__dict__["base"]
        value = getattr(base, name)  # AttributeError for what the base lacks, so hasattr keeps its meaning
        forward = self.__dict__["transform"].forward
        if name == "rows":
            def rows(index: Tensor, generator: torch.Generator | None = None):
                x, label = value(index, generator)
                return forward(x), label
            return rows
        if name == "sample_labeled":
            def sample_labeled(n: int, generator: torch.Generator | None = None):
                x, label = value(n, generator)
                return forward(x), label
            return sample_labeled
        return value

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.transform.forward(self.base.sample(n, generator))

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        return self.transform.forward(self.base.heldout(n, seed))

    def heldout_pair(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        reference, second = self.base.heldout_pair(n, seed)
        return self.transform.forward(reference), self.transform.forward(second)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p_z(z) = log p_x(x) + sum_d log std_d at x = inverse(z)."""
        return self.base.log_prob(self.transform.inverse(z)) + self.transform.log_det_inverse

    def to(self, device: torch.device | str) -> StandardizedData:
        return StandardizedData(self.base.to(device), Standardize(self.transform.mean.to(device),
                                                                  self.transform.std.to(device)))

    def __repr__(self) -> str:
        return f"StandardizedData({self.base!r})"
