"""Readers for image data sets on disk. Nothing here downloads: every reader takes files the user fetched.

Each reader returns integer pixels k (N, C, H, W) uint8 with its labels (N,) int64 (or None):

- :func:`read_idx`: one IDX file (MNIST, Fashion-MNIST), raw or gzip-compressed. Layout: two zero bytes, a
  type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
  dimensions n, then n big-endian uint32 sizes and the big-endian data.
- :func:`read_mnist_split`: the images/labels pair of one split of MNIST or Fashion-MNIST.
- :func:`read_cifar10`: CIFAR-10's "python version" batches (data_batch_1..5, test_batch): pickled dicts with
  b"data" (10000, 3072) uint8 (channel-major 32x32 planes) and b"labels". They are read with an unpickler
  that only admits numpy arrays, so a foreign pickle cannot run code.
- :func:`read_image_folder`: any folder of images (Pillow); class = subfolder name when there are subfolders.
  Every image is converted to RGB, its shorter side resized to `size` (bicubic), then centre-cropped
  (:func:`list_image_files` and :func:`read_image_files` are its two halves).
- :func:`write_image_files`: the way back, images in [-1, 1] to 8-bit PNG files.
- :func:`load_digits_images`: scikit-learn's 8x8 digits (shipped with scikit-learn), 17 grey levels 0..16.

Every problem with a file is a one-line ValueError naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from pathlib import Path

import numpy as np

from straightflow.data.base import error_reason

__all__ = [
    "IDX_TYPES", "IMAGE_SUFFIXES", "read_idx", "find_file", "read_mnist_split", "read_cifar10",
    "list_image_files", "read_image_files", "read_image_folder", "write_image_files", "load_digits_images",
]

IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MNIST_FILES = {  # split -> (images, labels), without the optional .gz
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)


# ------------------------------------------------------------------------------------------------ IDX
def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` or raw), with its own dtype and shape."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is a damaged gzip file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(
            f"{path} is not an IDX file: expected magic bytes 00 00 <type in 08,09,0B,0C,0D,0E> <ndim>, "
            f"got {raw[:4].hex(' ') or 'an empty file'}"
        )
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"IDX file {path} declares {ndim} dimensions but its header is truncated")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # exact: sizes up to 2^32 - 1 each
    if len(raw) != expected:
        raise ValueError(
            f"IDX file {path} has {len(raw)} bytes but its header (shape {shape}, {dtype.itemsize}-byte "
            f"items) requires {expected}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_file(folders: list[Path], name: str, what: str) -> Path:
    """The first of folder/name or folder/name.gz that exists, else a ValueError listing where it looked."""
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(f) for f in folders)
    raise ValueError(f"{what}: file {name}[.gz] not found in {looked}; see docs/images.md for where to get it")


def read_mnist_split(folders: list[Path], train: bool, what: str = "MNIST") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, 28, 28) uint8, labels (N,) int64) of MNIST or Fashion-MNIST's train or test split."""
    image_name, label_name = MNIST_FILES[train]
    image_path, label_path = find_file(folders, image_name, what), find_file(folders, label_name, what)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path} must hold uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path} holds {labels.shape} labels for {images.shape[0]} images in {image_path}")
    return images[:, None].copy(), labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------ CIFAR-10
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the numpy classes an array pickle needs, and nothing else (no code from a foreign file)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - unpickling arbitrary bytes can fail in any way
        reason = error_reason(err)
        raise ValueError(f"{path} is not a CIFAR-10 python batch ({reason})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected a dict, got {type(batch).__name__}")
    batch = {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        keys = sorted(map(repr, batch))[:5]
        raise ValueError(f"{path} is not a CIFAR-10 python batch: keys {', '.join(keys)} lack 'data' and 'labels'")
    try:
        data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        reason = error_reason(err)
        raise ValueError(f"{path}: CIFAR-10 data and labels must be arrays of integers ({reason})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(
            f"{path}: expected data (N, 3072) uint8 and N labels, got data {data.dtype} {data.shape} and "
            f"{labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: CIFAR-10 labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(folder: str | Path, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from CIFAR-10's python batches in `folder`
    (or in folder/cifar-10-batches-py): data_batch_1..5 for train, test_batch for test."""
    folder = Path(folder)
    inner = folder / "cifar-10-batches-py"
    base = inner if inner.is_dir() else folder
    names = CIFAR_TRAIN if train else CIFAR_TEST
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise ValueError(
            f"CIFAR-10: {', '.join(missing)} not found in {base}; expected the python-version batches "
            "(cifar-10-python.tar.gz, extracted), see docs/images.md"
        )
    parts = [_read_cifar_batch(base / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------------------ folders
def _load_square(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path} ({err})") from None
    except Exception as err:  # noqa: BLE001 - decoders of damaged files raise SyntaxError, ValueError, bombs, ...
        reason = error_reason(err)
        raise ValueError(f"cannot read image {path} ({type(err).__name__}: {reason})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_image_files(folder: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """([(file, class index)], class names) of a folder of images, in reading order: with subfolders, each
    subfolder (sorted by name) is one class and holds that class's files; without, the folder's own files
    (sorted), class index -1 and no class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _image_files(p))
    if classes:
        return [(f, k) for k, c in enumerate(classes) for f in _image_files(folder / c)], classes
    return [(f, -1) for f in _image_files(folder)], []


def read_image_files(files: list[Path], size: int = 32) -> np.ndarray:
    """Images (N, 3, size, size) uint8 from N image files: RGB, shorter side resized to `size`, centre-cropped."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    return np.stack([_load_square(Path(f), size) for f in files])


def read_image_folder(folder: str | Path, size: int = 32) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(images (N, 3, size, size) uint8, labels (N,) int64 or None, class names) from a folder of images.

    With subfolders, each subfolder (sorted by name) is one class and holds that class's images; without,
    the folder's own images are one unlabelled set. Shorter side resized to `size`, then centre-cropped.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    files, classes = list_image_files(folder)
    if len(files) < 2:
        raise ValueError(
            f"image folder {folder} holds {len(files)} images; need at least 2 ({', '.join(IMAGE_SUFFIXES)})"
        )
    images = read_image_files([f for f, _ in files], size)
    labels = np.array([k for _, k in files], dtype=np.int64) if classes else None
    return images, labels, classes


def write_image_files(x: np.ndarray, paths: list[Path]) -> list[Path]:
    """Write images x (N, C, H, W), C = 1 (grey) or 3 (RGB), pixels in [-1, 1] (clamped), as 8-bit PNG files:
    level k = round(255 (x + 1) / 2), so reading them back gives 2 k / 255 - 1. Folders are created."""
    from PIL import Image

    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or len(paths) != a.shape[0]:
        raise ValueError(f"need images (N, C, H, W) with C = 1 or 3 and one path each, got {a.shape} and "
                         f"{len(paths)} paths")
    levels = np.rint((np.clip(a, -1, 1) + 1) * 127.5).astype(np.uint8)
    for img, path in zip(levels, paths, strict=True):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(path)
    return [Path(p) for p in paths]


# ------------------------------------------------------------------------------------------------ digits
def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 1, 8, 8) uint8 with grey levels 0..16, labels (1797,) int64) of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.uint8)[:, None], digits.target.astype(np.int64)
