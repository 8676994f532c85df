"""User data files of vectors: one sample per row, as a 2-D ``.npy`` array or a comma-separated ``.csv``.

A ``.csv`` may start with one header line of column names; it is recognised (and skipped) when none of
its cells reads as a number. Every problem with a file is a one-line ValueError naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["VECTOR_SUFFIXES", "load_vectors", "save_vectors"]

VECTOR_SUFFIXES: tuple[str, ...] = (".npy", ".csv")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        allowed = ", ".join(VECTOR_SUFFIXES)
        raise ValueError(f"unsupported file type '{path.suffix}' for {path}; use one of: {allowed}")
    return suffix


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # pickled objects, empty, truncated or foreign files
        raise ValueError(f"cannot read {path} as a .npy array: {str(err).splitlines()[0]}") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"expected a numeric array in {path}, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"expected a real array in {path}, got dtype {array.dtype}")
    return array


def _read_csv(path: Path) -> np.ndarray:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            numbered = enumerate(csv.reader(handle), 1)
            lines = [(number, [cell.strip() for cell in row]) for number, row in numbered]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path} as comma-separated text: {err}") from None
    lines = [(number, cells) for number, cells in lines if any(cells)]  # blank lines carry nothing
    if lines and not any(_is_number(cell) for cell in lines[0][1]):
        lines = lines[1:]  # a header of column names
    if not lines:
        raise ValueError(f"no data rows in {path}")
    width = len(lines[0][1])
    rows = []
    for number, cells in lines:
        if len(cells) != width:
            raise ValueError(f"line {number} of {path} has {len(cells)} values, expected {width} as above")
        for column, cell in enumerate(cells, 1):
            if not _is_number(cell):
                raise ValueError(f"non-numeric value '{cell}' at line {number}, column {column} of {path}")
        rows.append([float(cell) for cell in cells])
    return np.asarray(rows, dtype=np.float64)


def load_vectors(path: str | Path) -> Tensor:
    """Read a data file of N vectors of dimension D into an (N, D) float32 tensor.

    Raises ValueError for a missing file, a suffix other than .npy / .csv, an array that is not
    (N, D), an empty array (N = 0 or D = 0), NaN or Inf values, and non-numeric csv cells.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    array = _read_npy(path) if suffix == ".npy" else _read_csv(path)
    if array.ndim != 2:
        raise ValueError(f"expected an array of shape (N, D), got {array.shape} in {path}")
    if array.size == 0:
        raise ValueError(f"empty array of shape {array.shape} in {path}; need N >= 1 rows of D >= 1 values")
    with np.errstate(over="ignore"):  # checked below: float64 values beyond float32's range become Inf
        values = array.astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} non-finite values (NaN or Inf) in {path}, first at row {row}, column {column}"
        )
    return torch.from_numpy(np.ascontiguousarray(values))


def save_vectors(path: str | Path, x: Tensor | np.ndarray) -> Path:
    """Write (N, D) vectors to a .npy (float32) or .csv (no header, 9 significant digits, which
    round-trips float32 exactly) file, creating parent folders. Returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if array.ndim != 2:
        raise ValueError(f"expected vectors of shape (N, D) to save to {path}, got {array.shape}")
    array = array.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        with path.open("wb") as handle:  # np.save on a name would append ".npy" to other spellings
            np.save(handle, array)
    else:
        np.savetxt(path, array, delimiter=",", fmt="%.9g")
    return path
