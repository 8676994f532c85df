"""User data files of vectors: one sample per row, as a 2-D ``.npy`` array or a comma-separated ``.csv``.

A ``.csv`` may start with one header line of column names; it is recognised (and skipped) when none of
its cells reads as a number, or when it reads ",0,1,..." (the header pandas writes above an index and
unnamed columns). What pandas writes by default is read as the data it holds, with a warning:

- an index column (the first column, headed "" or "Unnamed: 0", holding distinct integers such as
  0..N-1) is dropped, not trained on as a feature;
- a first line of column numbers 0..D-1 above rows that are not all integers is a header and is
  skipped; above integer rows it is kept, with a warning that it may be a header;
- a first column 0..N-1 without a header is kept, with a warning that it may be a row index.

Every problem with a file is a one-line ValueError naming the file.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from straightflow.data.base import error_reason

__all__ = ["VECTOR_SUFFIXES", "load_vectors", "read_npy", "save_vectors"]

VECTOR_SUFFIXES: tuple[str, ...] = (".npy", ".csv")
INDEX_HEADERS = ("", "Unnamed: 0")  # what pandas writes above its index column


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


def read_npy(path: Path) -> np.ndarray:
    """A real numeric array from a .npy file; anything else (pickles, truncated or foreign bytes, strings, complex
    numbers) is a one-line ValueError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any bytes: pickled, empty, truncated, foreign, a mangled header
        reason = error_reason(err)
        raise ValueError(f"cannot read {path} as a .npy array: {reason}") from None
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
    header = None
    if lines and (not any(_is_number(cell) for cell in lines[0][1]) or _index_and_numbers(lines[0][1])):
        header, lines = lines[0][1], lines[1:]  # a header of column names
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
    array = np.asarray(rows, dtype=np.float64)
    if header is None:
        array = _column_number_header(array, lines[0][1], path)
    return _index_column(array, header, path)


def _index_and_numbers(cells: list[str]) -> bool:
    """Whether a first line is pandas' header of an index above unnamed columns: "" (or "Unnamed: 0"), 0, 1, ..."""
    return len(cells) >= 2 and cells[0] in INDEX_HEADERS and cells[1:] == [str(k) for k in range(len(cells) - 1)]


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _column_number_header(array: np.ndarray, first: list[str], path: Path) -> np.ndarray:
    """Rows without the first when it reads 0..D-1 (pandas' header of unnamed columns) and the rows below are
    not all integers; a warning either way."""
    n, d = array.shape
    if n < 2 or d < 2 or not all(cell.lstrip("+-").isdigit() for cell in first):
        return array
    if not np.array_equal(array[0], np.arange(d)):
        return array
    rest = array[1:][np.isfinite(array[1:])]  # a NaN below is reported by the caller, not taken as a sign here
    if _integral(rest):
        warnings.warn(f"line 1 of {path} reads {','.join(first)}, which may be a header of column numbers; "
                      "it is kept as data (delete the line if it is a header)", UserWarning, stacklevel=4)
        return array
    warnings.warn(f"line 1 of {path} reads {','.join(first)}: taken as a header of column numbers (as pandas "
                  "writes for unnamed columns) and skipped", UserWarning, stacklevel=4)
    return array[1:]


def _index_column(array: np.ndarray, header: list[str] | None, path: Path) -> np.ndarray:
    """Rows without their first column when it is a pandas index (headed "" or "Unnamed: 0", distinct
    integers); a warning for a headerless first column 0..N-1, which is kept."""
    n, d = array.shape
    if d < 2 or not _integral(array[:, 0]):
        return array
    if header is not None and header[0] in INDEX_HEADERS:
        if len(np.unique(array[:, 0])) == n:
            warnings.warn(f"the first column of {path} (header {header[0]!r}, integers {int(array[0, 0])}, "
                          f"{int(array[min(1, n - 1), 0])}, ...) is a pandas index, not a feature: dropped "
                          "(write the file with index=False to silence this)", UserWarning, stacklevel=4)
            return array[:, 1:]
        return array
    if header is None and n >= 3 and np.array_equal(array[:, 0], np.arange(n)):
        warnings.warn(f"the first column of {path} counts 0..{n - 1} like a row index; it is kept as a feature "
                      "(remove it if it is an index)", UserWarning, stacklevel=4)
    return array


def load_vectors(path: str | Path) -> Tensor:
    """Read a data file of N vectors of dimension D into an (N, D) float32 tensor.

    Raises ValueError for a missing file, a suffix other than .npy / .csv, an array that is not
    (N, D), an empty array (N = 0 or D = 0), NaN or Inf values, and non-numeric csv cells.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    array = read_npy(path) if suffix == ".npy" else _read_csv(path)
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
