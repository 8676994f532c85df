"""Fixed couplings on disk: the (x0, x1[, label]) pairs that rectified flow trains on.

A pairs folder holds shards ``pairs-00000.safetensors``, ``pairs-00001.safetensors``, ... (tensors ``x0``
and ``x1`` of shape (m, *D), and ``label`` (m,) for conditional runs; JSON metadata names the shard index
and the settings that made it) and, once every shard is written, the manifest ``pairs.json``:

    {"n": total rows, "shard_size": rows per shard (the last may be shorter), "shards": count,
     "shape": D, "labels": bool, ...the generator's settings}

Shards are written atomically (temp file + rename), so a folder never holds a half-written shard; the
manifest is written last, so a folder without one is an interrupted generation (see
:func:`straightflow.pipelines.pairs.generate_reflow_pairs`, which resumes it).

:class:`PairSource` serves random rows of a loaded coupling to the trainer: the pairs are already paired,
so no coupling is applied to them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from straightflow.paths.coupling import CoupledBatch
from straightflow.rng import randint
from straightflow.training.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "MANIFEST", "shard_path", "shard_count", "save_shard", "read_shard", "read_manifest", "load_pairs",
    "PairSource",
]

MANIFEST = "pairs.json"


def shard_path(folder: str | Path, index: int) -> Path:
    """folder / pairs-{index:05d}.safetensors."""
    return Path(folder) / f"pairs-{index:05d}.safetensors"


def shard_count(n: int, shard_size: int) -> int:
    """ceil(n / shard_size): shard i holds rows [i * shard_size, min(n, (i + 1) * shard_size))."""
    return math.ceil(n / shard_size)


def save_shard(
    folder: str | Path, index: int, x0: Tensor, x1: Tensor, label: Tensor | None, meta: dict[str, Any]
) -> Path:
    """Write shard `index` atomically: x0, x1 (m, *D), label (m,) or None; meta is stored as JSON."""
    tensors = {"x0": x0, "x1": x1}
    if label is not None:
        tensors["label"] = label
    path = shard_path(folder, index)
    save_checkpoint(path, tensors, {**meta, "shard": index, "rows": int(x0.shape[0])})
    return path


def read_shard(folder: str | Path, index: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) of shard `index`; a missing or corrupt file is a one-line ValueError."""
    path = shard_path(folder, index)
    if not path.is_file():
        raise ValueError(f"pairs shard {path} is missing")
    tensors, meta = load_checkpoint(path, kind="pairs shard")  # corrupt / foreign files: ValueError naming it
    rows = meta.get("rows")
    if "x0" not in tensors or "x1" not in tensors or meta.get("shard") != index:
        raise ValueError(f"{path} is not pairs shard {index} (expected tensors x0, x1 and shard index {index})")
    if tensors["x0"].shape != tensors["x1"].shape or tensors["x0"].shape[0] != rows:
        raise ValueError(f"pairs shard {path} is inconsistent: x0 {tuple(tensors['x0'].shape)}, "
                         f"x1 {tuple(tensors['x1'].shape)}, {rows} rows in its metadata")
    return tensors, meta


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete pairs folder; a missing folder or manifest is a one-line ValueError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"pairs folder {folder} does not exist")
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"pairs folder {folder} has no {MANIFEST}: its generation did not finish "
                         "(rerun the same reflow/distill command to resume it)")
    try:
        manifest = json.loads(path.read_text())
        int(manifest["n"]), int(manifest["shard_size"]), int(manifest["shards"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is not a pairs manifest (needs n, shard_size, shards)") from None
    return manifest


def load_pairs(folder: str | Path) -> tuple[Tensor, Tensor, Tensor | None]:
    """(x0, x1, label or None) of a complete pairs folder: x0, x1 (n, *D), label (n,) long.

    Every shard the manifest lists must exist, load, carry its own index, have the right number of
    rows and the manifest's sample shape; otherwise a one-line ValueError names the shard and the problem.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    n, size, shards = int(manifest["n"]), int(manifest["shard_size"]), int(manifest["shards"])
    if shards != shard_count(n, size):
        raise ValueError(f"{folder / MANIFEST} lists {shards} shards for n={n}, shard_size={size}; "
                         f"expected {shard_count(n, size)}")
    shape = tuple(manifest.get("shape", ()))
    x0s, x1s, labels = [], [], []
    for i in range(shards):
        tensors, _ = read_shard(folder, i)
        want = min(size, n - i * size)
        got = tuple(tensors["x0"].shape)
        if got[0] != want or (shape and got[1:] != shape):
            raise ValueError(f"pairs shard {shard_path(folder, i)} has x0 of shape {got}; "
                             f"the manifest expects {(want, *shape)}")
        if ("label" in tensors) != bool(manifest.get("labels", False)):
            raise ValueError(f"pairs shard {shard_path(folder, i)} "
                             f"{'has' if 'label' in tensors else 'lacks'} labels, unlike its manifest")
        x0s.append(tensors["x0"])
        x1s.append(tensors["x1"])
        if "label" in tensors:
            labels.append(tensors["label"].long())
    return torch.cat(x0s), torch.cat(x1s), (torch.cat(labels) if labels else None)


class PairSource:
    """Rows of a fixed coupling, drawn uniformly with replacement: sample(b, g) -> CoupledBatch.

    x0, x1: (N, *D) paired row by row; label: (N,) or None, the class of row i's x1.
    """

    draws_on_any_device = True  # like a DataSource's: `to(device)` holds the pairs where the draws happen

    def __init__(self, x0: Tensor, x1: Tensor, label: Tensor | None = None, name: str = "pairs") -> None:
        if x0.shape != x1.shape or x0.dim() < 2 or x0.shape[0] < 1:
            raise ValueError(f"pairs need x0 and x1 of one shape (N, *D) with N >= 1, got "
                             f"{tuple(x0.shape)} and {tuple(x1.shape)}")
        if label is not None and label.shape != x0.shape[:1]:
            raise ValueError(f"pair labels need shape ({x0.shape[0]},), got {tuple(label.shape)}")
        self.x0, self.x1 = x0.to(torch.float32), x1.to(torch.float32)
        self.label = None if label is None else label.long()
        self.name = name

    @classmethod
    def from_folder(cls, folder: str | Path) -> PairSource:
        return cls(*load_pairs(folder), name=str(folder))

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x0.shape[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> CoupledBatch:
        """n rows (x0 (n, *D), x1 (n, *D), label (n,) or None), uniform with replacement."""
        return self.rows(randint(len(self), n, generator, self.x0.device))

    def rows(self, index: Tensor) -> CoupledBatch:
        """The pairs at `index` (B,) (the trainer passes data.epochs.epoch_indices: each pair once per epoch)."""
        return CoupledBatch(self.x0[index], self.x1[index], None if self.label is None else self.label[index])

    def to(self, device: torch.device | str) -> PairSource:
        """These pairs (and labels) held on `device`, where `rows` and `sample` then index them."""
        label = None if self.label is None else self.label.to(device)
        return PairSource(self.x0.to(device), self.x1.to(device), label, self.name)

    def __repr__(self) -> str:
        return f"PairSource(name={self.name!r}, n={len(self)}, shape={self.shape}, labels={self.label is not None})"
