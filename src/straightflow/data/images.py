r"""Image data sets as a :class:`~straightflow.data.base.DataSource` of shape (C, H, W), pixels in [-1, 1].

Specs (``data.data``): "digits" (scikit-learn's 8x8 digits, shipped, the built-in default), "digits-thin" and
"digits-bold" (two unpaired domains made from disjoint halves of the digits, see
:mod:`straightflow.data.domains`), "mnist", "fashion-mnist", "cifar10" (files under ``data.data_dir``, never
downloaded) and "folder:PATH" (any folder of images, resized and centre-cropped to ``data.image_size``).

Pixels. A data set stores integer levels k in {0, ..., L-1} (L = 256 for 8-bit images, 17 for digits),
mapped to x = 2 k / (L - 1) - 1, so black is -1 and white is +1. With uniform dequantisation (for
likelihoods) a training sample is instead x = 2 (k + u) / L - 1, u ~ U(0, 1)^D, a continuous variable in
(-1, 1). For a density p_x of that x the discrete likelihood obeys
    log P(k) >= E_u[log p_x(x)] + D log 2 - D log L,
so bits per dimension (an upper bound, averaged over u) are
    bpd = -log p_x(x) / (D ln 2) + log2(L) - 1,
which :func:`straightflow.density.bits_per_dim` computes (``straightflow likelihood`` reads ``levels`` and
``dequantize`` from the source, and dequantises held-out pixels itself when the source does not).

Splits. MNIST, Fashion-MNIST and CIFAR-10 use their official train/test files; digits and folders hold out
a fixed seeded 20% / 10% as their test split (each digits domain splits its own half the same way).
``sample`` draws from the train split, ``heldout`` from the
test split, which metrics compare against.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from straightflow.data.base import DataSource, check_count, heldout_index
from straightflow.data.domains import DIGITS_DOMAINS, load_digits_domain
from straightflow.data.image_files import load_digits_images, read_cifar10, read_image_folder, read_mnist_split
from straightflow.rng import rand, randint

__all__ = [
    "IMAGE_DATASETS", "IMAGE_SHAPES", "ImageSource", "is_image_spec", "image_shape", "resolve_images",
    "default_data_dir",
]

IMAGE_DATASETS = ("digits", *DIGITS_DOMAINS, "mnist", "fashion-mnist", "cifar10")
IMAGE_SHAPES = {"digits": (1, 8, 8), **{d: (1, 8, 8) for d in DIGITS_DOMAINS}, "mnist": (1, 28, 28),
                "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
CLASS_NAMES = {
    "digits": [str(k) for k in range(10)],
    **{d: [str(k) for k in range(10)] for d in DIGITS_DOMAINS},
    "mnist": [str(k) for k in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
FOLDER_PREFIX = "folder:"
SPLIT_SEED = 0  # the fixed permutation that splits digits and folders into train / test


def is_image_spec(spec: str) -> bool:
    """Whether a ``data.data`` value names an image data set."""
    return spec in IMAGE_DATASETS or spec.startswith(FOLDER_PREFIX)


def image_shape(spec: str, image_size: int = 32) -> tuple[int, int, int]:
    """(C, H, W) of an image spec without reading it (folders are RGB at image_size x image_size)."""
    if spec in IMAGE_SHAPES:
        return IMAGE_SHAPES[spec]
    if spec.startswith(FOLDER_PREFIX):
        return (3, int(image_size), int(image_size))
    raise ValueError(f"unknown image data '{spec}'; choose from: {', '.join(IMAGE_DATASETS)}, folder:PATH")


def default_data_dir() -> Path:
    """$STRAIGHTFLOW_DATA if set, else ./data: where image files are looked for when --data-dir is not given."""
    return Path(os.environ.get("STRAIGHTFLOW_DATA", "data"))


def _split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = max(1, round(fraction * n))
    return perm[n_test:], perm[:n_test]


class ImageSource(DataSource):
    """Images (N, C, H, W) as integer levels, split into train and test, served as floats in [-1, 1].

    train / test: uint8 level tensors (N, C, H, W); *_labels: (N,) int64 or None; levels: L.
    `conditional` decides whether models see the labels (``num_classes`` is 0 otherwise; ``n_labels`` always
    counts the data's classes). `hflip` flips training samples left-right with probability 1/2; `dequantize`
    adds U(0, 1) noise to the levels of training and held-out samples (for likelihoods in bits/dim).
    """

    def __init__(
        self, name: str, train: Tensor, test: Tensor, train_labels: Tensor | None = None,
        test_labels: Tensor | None = None, levels: int = 256, class_names: list[str] | None = None,
        conditional: bool = False, hflip: bool = False, dequantize: bool = False,
    ) -> None:
        if train.dim() != 4 or test.dim() != 4 or train.shape[1:] != test.shape[1:]:
            raise ValueError(f"image data '{name}' must be (N, C, H, W), got {tuple(train.shape)}, {tuple(test.shape)}")
        if train.shape[0] < 1 or test.shape[0] < 1:
            raise ValueError(f"image data '{name}' needs train and test images, got {train.shape[0]}, {test.shape[0]}")
        if conditional and train_labels is None:
            raise ValueError(f"image data '{name}' has no labels (no class subfolders), so it cannot be conditional")
        self.name, self.shape = name, tuple(int(d) for d in train.shape[1:])
        self.train, self.test, self.levels = train, test, int(levels)
        self.train_labels, self.test_labels = train_labels, test_labels
        self.class_names = class_names or []
        self.n_labels = len(self.class_names) if train_labels is not None else 0
        self.num_classes = self.n_labels if conditional else 0
        self.hflip, self.dequantize = hflip, dequantize

    def to_pixels(self, levels: Tensor, generator: torch.Generator | None = None, dequantize: bool = False) -> Tensor:
        """Integer levels (B, C, H, W) -> float32 pixels in [-1, 1] (dequantised if asked, see module doc)."""
        k = levels.to(torch.float32)
        if dequantize:
            return 2.0 * (k + rand(k.shape, generator, k.device)) / self.levels - 1.0
        return 2.0 * k / (self.levels - 1) - 1.0

    def _draw(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        check_count(n)
        index = randint(self.train.shape[0], n, generator, self.train.device)
        x = self.to_pixels(self.train[index], generator, self.dequantize)
        if self.hflip:
            flip = rand(n, generator, x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, None if self.train_labels is None else self.train_labels[index]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n training images (n, C, H, W), drawn uniformly with replacement."""
        return self._draw(n, generator)[0]

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(images (n, C, H, W), labels (n,) int64) from the training split."""
        if self.train_labels is None:
            raise ValueError(f"image data '{self.name}' has no labels")
        x, label = self._draw(n, generator)
        return x, label

    def to(self, device: torch.device | str) -> ImageSource:
        """The training split (levels and labels) on `device`, where `sample` then indexes and dequantises."""
        moved = copy.copy(self)
        moved.train = self.train.to(device)
        moved.train_labels = None if self.train_labels is None else self.train_labels.to(device)
        return moved

    def heldout_labeled(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
        """n test images and their labels: distinct in a seeded order if n <= the test size, else resampled."""
        g = torch.Generator().manual_seed(int(seed))
        index = heldout_index(self.test.shape[0], n, g)
        x = self.to_pixels(self.test[index], g, self.dequantize)
        return x, None if self.test_labels is None else self.test_labels[index]

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        return self.heldout_labeled(n, seed)[0]

    def __repr__(self) -> str:
        return (f"ImageSource(name={self.name!r}, shape={self.shape}, train={self.train.shape[0]}, "
                f"test={self.test.shape[0]}, classes={self.n_labels}, conditional={self.num_classes > 0})")


@functools.lru_cache(maxsize=4)
def _load(spec: str, data_dir: str, image_size: int) -> tuple:
    """(train, test, train_labels, test_labels, levels, class names) as numpy arrays; cached per process."""
    folder = Path(data_dir) if data_dir else default_data_dir()
    if spec == "digits":
        images, labels = load_digits_images()
        tr, te = _split(len(images), 0.2)
        return images[tr], images[te], labels[tr], labels[te], 17, CLASS_NAMES["digits"]
    if spec in DIGITS_DOMAINS:
        images, labels = load_digits_domain(spec)
        tr, te = _split(len(images), 0.2)
        return images[tr], images[te], labels[tr], labels[te], 17, CLASS_NAMES[spec]
    if spec in ("mnist", "fashion-mnist"):
        sub = {"mnist": ["mnist", "MNIST/raw", "MNIST"], "fashion-mnist": ["fashion-mnist", "FashionMNIST/raw",
                                                                          "FashionMNIST", "fashion_mnist"]}[spec]
        folders = [folder] + [folder / s for s in sub]
        what = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}[spec]
        x_tr, y_tr = read_mnist_split(folders, True, what)
        x_te, y_te = read_mnist_split(folders, False, what)
        return x_tr, x_te, y_tr, y_te, 256, CLASS_NAMES[spec]
    if spec == "cifar10":
        x_tr, y_tr = read_cifar10(folder, train=True)
        x_te, y_te = read_cifar10(folder, train=False)
        return x_tr, x_te, y_tr, y_te, 256, CLASS_NAMES["cifar10"]
    path = Path(spec[len(FOLDER_PREFIX):]).expanduser()
    images, labels, classes = read_image_folder(path, image_size)
    tr, te = _split(len(images), 0.1)
    if labels is None:
        return images[tr], images[te], None, None, 256, []
    return images[tr], images[te], labels[tr], labels[te], 256, classes


def resolve_images(
    spec: str, data_dir: str | Path | None = None, image_size: int = 32, conditional: bool = False,
    hflip: bool = False, dequantize: bool = False,
) -> ImageSource:
    """The :class:`ImageSource` for an image spec; files are looked for under data_dir (see module doc)."""
    if not is_image_spec(spec):
        raise ValueError(f"unknown image data '{spec}'; choose from: {', '.join(IMAGE_DATASETS)}, folder:PATH")
    if spec.startswith("digits") and hflip:
        raise ValueError("horizontal flips would change digits' meaning; use data.hflip = false for digits")
    train, test, y_tr, y_te, levels, classes = _load(spec, str(data_dir or ""), int(image_size))

    def t(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    return ImageSource(spec, t(train), t(test), t(y_tr), t(y_te), levels, list(classes), conditional, hflip,
                       dequantize)
