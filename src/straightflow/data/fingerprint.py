"""Fingerprints of a run's data: enough to find them again and to tell them from other data at that path.

A run records one *record* (a JSON-able dict) for its data and one for its source (see
:mod:`straightflow.training.provenance`):

- ``spec``: the spec the run resolved, file and folder paths made absolute (:func:`absolute_spec`);
- ``kind``: "gaussian", "toy" (generated, nothing to read), "file" (a .npy / .csv of vectors), "folder"
  (``folder:PATH`` images), "images" (a named image set: the digits sets ship with scikit-learn, those in
  :data:`DATA_DIR_IMAGE_SETS` are read from ``data.data_dir``), or "other" (a spec this module does not know,
  e.g. data handed over as objects);
- ``path``: the absolute file or folder the data are read from (file, folder, images read from data_dir);
- ``sha256``: for a file, the SHA-256 of its bytes; for a folder, of its manifest, the sorted lines
  "relative path<TAB>size in bytes" of its image files (cheap: no pixel is read; it changes when an image is
  added, removed, renamed or changes size). Named image sets under ``data_dir`` record the folder only.

:func:`check_record` reads the fingerprint again and refuses, in one line, data that are missing or changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from straightflow.data.files import VECTOR_SUFFIXES
from straightflow.data.image_files import IMAGE_SUFFIXES
from straightflow.data.images import FOLDER_PREFIX, default_data_dir, is_image_spec
from straightflow.data.toy import TOY_DATASETS

__all__ = ["DATA_DIR_IMAGE_SETS", "absolute_spec", "absolute_dir", "file_sha256", "folder_sha256", "data_record",
           "check_record"]

DATA_DIR_IMAGE_SETS = ("mnist", "fashion-mnist", "cifar10")  # image sets read from files under data.data_dir
# what to do about data that are missing or changed, by the role the data play in the run
_HINTS = {
    "data": ("pass --data PATH", "pass --data to score against another file deliberately"),
    "source": ("restore it, or pass x0 to sample_run", "restore it, or pass x0 to sample_run"),
}


def _absolute(path: str | Path) -> str:
    # abspath, not resolve: a path through a symbolic link keeps naming the link
    return os.path.abspath(Path(path).expanduser())


def absolute_spec(spec: str) -> str:
    """The spec with its file or folder made absolute: "pts.npy" -> "/cwd/pts.npy", "folder:imgs" ->
    "folder:/cwd/imgs"; names ("gaussian", toy and image sets) come back unchanged."""
    if spec.startswith(FOLDER_PREFIX):
        return FOLDER_PREFIX + _absolute(spec[len(FOLDER_PREFIX):])
    if spec not in TOY_DATASETS and Path(spec).suffix.lower() in VECTOR_SUFFIXES:
        return _absolute(spec)
    return spec


def absolute_dir(path: str) -> str:
    """An absolute folder path; "" (not set) stays "" ."""
    return _absolute(path) if path else ""


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(path: str | Path) -> str:
    """SHA-256 of a folder's manifest: the sorted lines "relative path<TAB>size" of its image files, at any
    depth (class subfolders included)."""
    root = Path(path)
    lines = sorted(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}" for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def data_record(spec: str, data_dir: str = "") -> dict[str, Any]:
    """The record of a data (or source) spec as resolved now (see the module doc); reads a file to hash it.

    data_dir: where named image sets are read from ("" = :func:`~straightflow.data.images.default_data_dir`).
    """
    spec = absolute_spec(spec)
    if spec == "gaussian":
        return {"spec": spec, "kind": "gaussian"}
    if spec in TOY_DATASETS:
        return {"spec": spec, "kind": "toy"}
    if spec.startswith(FOLDER_PREFIX):
        path = spec[len(FOLDER_PREFIX):]
        return {"spec": spec, "kind": "folder", "path": path, "sha256": folder_sha256(path)}
    if is_image_spec(spec):
        record = {"spec": spec, "kind": "images"}
        if spec in DATA_DIR_IMAGE_SETS:
            record["path"] = absolute_dir(data_dir) or _absolute(default_data_dir())
        return record
    if Path(spec).suffix.lower() in VECTOR_SUFFIXES and Path(spec).is_file():
        return {"spec": spec, "kind": "file", "path": spec, "sha256": file_sha256(spec)}
    return {"spec": spec, "kind": "other"}


def check_record(record: dict[str, Any], role: str = "data") -> None:
    """Refuse data that are not what the run was trained on: a one-line ValueError when the recorded file or
    folder is missing, or when its SHA-256 differs. role: "data" or "source" (picks the advice given)."""
    if role not in _HINTS:
        raise ValueError(f"unknown data role {role!r}; choose from: {', '.join(_HINTS)}")
    path = record.get("path")
    if path is None:
        return  # generated or shipped: nothing of the user's to check
    missing_hint, changed_hint = _HINTS[role]
    noun = f"{role} file" if record["kind"] == "file" else f"{role} folder"
    exists = Path(path).is_file() if record["kind"] == "file" else Path(path).is_dir()
    if not exists:
        raise ValueError(f"{noun} {path} not found; {missing_hint}")
    want = record.get("sha256")
    if want is None:
        return
    have = file_sha256(path) if record["kind"] == "file" else folder_sha256(path)
    if have != want:
        raise ValueError(f"{noun} {path} changed since the run was trained (sha256 {want[:12]}... then, "
                         f"{have[:12]}... now): {changed_hint}")
