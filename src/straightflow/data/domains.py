r"""Two image domains made from scikit-learn's 8x8 digits, for unpaired image-to-image translation.

- ``digits-thin``: digits as shipped (grey levels k in {0, ..., 16}), strokes 1-2 pixels wide;
- ``digits-bold``: digits whose strokes are thickened by a grey dilation with a plus-shaped footprint whose
  arms weigh 3/4,
      bold[i, j] = max(k[i, j], floor(3/4 max(k[i-1, j], k[i+1, j], k[i, j-1], k[i, j+1])))   (0 outside),
  so every stroke grows by one pixel on each side, at 3/4 of its intensity; the mean grey level rises by
  about 60%. (The flat plus, arms of weight 1, fills the loops of 8x8 digits: even the exact optimal-transport
  pairing of the two domains then keeps the class of only 81% of the digits, against 91% here.)

Unpaired by construction: the 1797 digits are split once into two halves, class by class (a seeded
permutation of each class's rows, :data:`HALVES_SEED`; the first ceil(n_k / 2) rows of class k go to the first
half), and each domain takes its own half (thin the first, 901 rows; bold the second, 896 rows), so no written
digit appears in both domains, dilated or not, and both domains have the same class proportions (to one row).
Each half is then split into train / test like ``digits`` (a fixed seeded 80/20). Both keep the digit labels,
so a translation's class can be checked; both are made in-process, deterministically, from the copy shipped
with scikit-learn.
"""

from __future__ import annotations

import numpy as np

from straightflow.data.image_files import load_digits_images

__all__ = ["DIGITS_DOMAINS", "HALVES_SEED", "dilate", "domain_rows", "load_digits_domain"]

HALVES_SEED = 1  # the permutation that splits the digits into the two domains' halves
DIGITS_DOMAINS = {"digits-thin": 0, "digits-bold": 1}  # spec -> which half of the digits it takes
ARM_WEIGHT = (3, 4)  # the dilation's arms weigh 3/4 (numerator, denominator: integer levels stay integers)


def dilate(levels: np.ndarray) -> np.ndarray:
    """Grey dilation with the 3x3 plus footprint, arms weighted 3/4, over the last two axes of integer levels:
    (..., H, W) -> (..., H, W), same dtype; each pixel becomes max(itself, floor(3/4 of the largest of its 4
    neighbours)), with zeros outside the image."""
    if levels.ndim < 2 or not np.issubdtype(levels.dtype, np.integer):
        raise ValueError(f"dilation needs integer images (..., H, W), got {levels.dtype} of shape {levels.shape}")
    pad = [(0, 0)] * (levels.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(levels, pad).astype(np.int64)
    arms = np.maximum.reduce([p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]])
    num, den = ARM_WEIGHT
    return np.maximum(levels, arms * num // den).astype(levels.dtype)


def domain_rows(spec: str, labels: np.ndarray) -> np.ndarray:
    """The indices (sorted) of the digits, labels (N,), that domain `spec` takes: per class k, a seeded
    permutation of its n_k rows split after ceil(n_k / 2); the two domains' rows are disjoint, cover every row
    and hold each class in equal shares (to one row)."""
    if spec not in DIGITS_DOMAINS:
        raise ValueError(f"unknown digits domain '{spec}'; choose from: {', '.join(DIGITS_DOMAINS)}")
    rng = np.random.default_rng(HALVES_SEED)
    half = []
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        cut = (len(rows) + 1) // 2
        half.append(rows[:cut] if DIGITS_DOMAINS[spec] == 0 else rows[cut:])
    return np.sort(np.concatenate(half))


def load_digits_domain(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, 8, 8) uint8 with levels 0..16, labels (N,) int64) of a digits domain (see module doc)."""
    images, labels = load_digits_images()
    rows = domain_rows(spec, labels)
    images, labels = images[rows], labels[rows]
    if spec == "digits-bold":
        images = dilate(images)
    return images, labels
