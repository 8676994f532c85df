"""PNG figures for image runs: sample grids (one row per class for conditional runs), translation grids (input |
output side by side) and quality vs NFE.

Built on `matplotlib.figure.Figure` directly, like :mod:`straightflow.plots.figures`; pixels are drawn with
nearest-neighbour interpolation so 8x8 digits stay crisp. Every function returns the PNG's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from straightflow.plots.figures import _save

__all__ = ["image_grid", "plot_image_grid", "plot_translation_grid", "plot_quality_vs_nfe"]


def image_grid(x: Tensor | np.ndarray, nrow: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (rows * (H + pad) + pad, nrow * (W + pad) + pad, C) in [0, 1], row-major,
    with white padding; empty cells of the last row stay white."""
    a = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] == 0:
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3 and N >= 1, got {a.shape}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    n, c, h, w = a.shape
    rows = -(-n // nrow)
    grid = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    pixels = ((np.clip(a, -1, 1) + 1) / 2).transpose(0, 2, 3, 1)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = pixels[i]
    return grid


def plot_image_grid(
    x: Tensor | np.ndarray, path: str | Path, nrow: int = 10, title: str = "",
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write images x (N, C, H, W) in [-1, 1] as a grid of `nrow` columns; `row_labels` names the rows
    (e.g. one class per row for a conditional run)."""
    grid = image_grid(x, nrow)
    n, _, h, _ = np.shape(x)
    rows = -(-n // nrow)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} names for {rows} rows")
    fig, ax = _grid_figure(grid, nrow, title)
    if row_labels is not None:
        ax.set_yticks([1 + r * (h + 1) + h / 2 - 0.5 for r in range(rows)], list(row_labels), fontsize=7)
        ax.tick_params(length=0)
    return _save(fig, path)


def _grid_figure(grid: np.ndarray, ncol: int, title: str) -> tuple[Figure, object]:
    """(figure, axes) showing a grid from :func:`image_grid` of `ncol` image columns: no ticks, no frame."""
    scale = max(2.0, min(12.0, 0.45 * ncol))
    fig = Figure(figsize=(scale, scale * grid.shape[0] / grid.shape[1] + (0.4 if title else 0)))
    ax = fig.add_subplot()
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig, ax


def plot_translation_grid(
    columns: Mapping[str, Tensor | np.ndarray], path: str | Path, per_row: int = 5, max_items: int = 50,
    title: str = "",
) -> Path:
    """Side-by-side translations: `columns` maps a name to images (N, C, H, W) in [-1, 1], row i of each being
    one item (e.g. {"input": x, "output": y}, or the input beside several models' outputs). Each item is a
    group of tiles in the columns' order, `per_row` groups per grid row (dark lines between groups), the
    column names above the first row; the first `max_items` items are drawn."""
    if not columns:
        raise ValueError("plot_translation_grid needs at least one column, got none")
    arrays = [np.asarray(v.detach().cpu().float() if isinstance(v, Tensor) else v, dtype=np.float32)
              for v in columns.values()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"every column needs images of one shape (N, C, H, W), got {sorted(shapes)}")
    if isinstance(per_row, bool) or not isinstance(per_row, int) or per_row < 1:
        raise ValueError(f"per_row must be a positive int, got {per_row!r}")
    k = len(arrays)
    n = min(arrays[0].shape[0], max_items)
    tiles = np.stack([a[:n] for a in arrays], axis=1).reshape(n * k, *arrays[0].shape[1:])  # item-major
    groups = min(per_row, n)
    ncol = groups * k
    grid = image_grid(tiles, ncol)
    fig, ax = _grid_figure(grid, ncol, title)
    w = arrays[0].shape[3]
    names = list(columns)
    ax.set_xticks([1 + c * (w + 1) + w / 2 - 0.5 for c in range(ncol)], [names[c % k] for c in range(ncol)],
                  fontsize=6, rotation=90 if max(len(s) for s in names) > 6 else 0)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for g in range(1, groups):
        ax.axvline(g * k * (w + 1), color="0.15", lw=1.5)
    return _save(fig, path)


def plot_quality_vs_nfe(
    curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, metric: str = "feature-FID",
    title: str = "", log_y: bool = True, reference: float | None = None, reference_label: str = "held-out data",
) -> Path:
    """One line per method: metric against NFE (log2 x-axis). curves: name -> [(nfe, value), ...];
    `reference` draws a dashed horizontal line (e.g. the held-out data's own score)."""
    if not curves:
        raise ValueError("plot_quality_vs_nfe needs at least one curve, got none")
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    values = []
    for name, points in curves.items():
        pts = sorted((float(a), float(b)) for a, b in points)
        if not pts:
            raise ValueError(f"curve '{name}' has no points")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", lw=1.4, label=name)
        values += [p[1] for p in pts]
    if reference is not None:
        ax.axhline(reference, ls="--", c="0.4", lw=1, label=reference_label)
        values.append(reference)
    ax.set_xscale("log", base=2)
    finite = np.asarray(values)[np.isfinite(values)]
    ax.set_yscale("log" if log_y and len(finite) and (finite > 0).all() else "linear")
    ax.set_xlabel("NFE (network evaluations per sample)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)

