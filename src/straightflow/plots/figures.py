"""PNG figures of samples, trajectories and loss curves.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no GUI backend is
touched, no global figure state leaks, and a caller's interactive backend stays as it was.
Every function writes one PNG (creating parent folders) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor

__all__ = [
    "samples_figure", "plot_samples", "plot_trajectories", "plot_loss_curve", "plot_sample_panels",
    "plot_trajectory_panels",
]

_DATA_COLOUR, _SAMPLE_COLOUR = "0.7", "tab:blue"
_START_COLOUR, _END_COLOUR = "0.15", "tab:red"  # neither occurs in viridis
_MARGIN = 0.3  # axes reach 30% of the data's extent beyond its bounding box


def _points(x: Tensor | np.ndarray, what: str) -> np.ndarray:
    """(n, D) with D >= 2 as float64 numpy; ValueError otherwise."""
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"{what} must have shape (n, D) with D >= 2, got {array.shape}")
    return array.astype(np.float64)


def _limits(data: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """The data's bounding box in its first two coordinates, widened by the margin."""
    finite = data[np.isfinite(data[:, :2]).all(axis=1), :2]
    low, high = (finite.min(axis=0), finite.max(axis=0)) if len(finite) else (np.zeros(2), np.ones(2))
    pad = _MARGIN * np.maximum(high - low, 1e-6)
    return (low[0] - pad[0], high[0] + pad[0]), (low[1] - pad[1], high[1] + pad[1])


def _scatter_panel(ax, samples: np.ndarray, data: np.ndarray, title: str) -> None:
    """Samples over data on fixed axes (the data's box), counting the samples that fall outside."""
    (x_lo, x_hi), (y_lo, y_hi) = _limits(data)
    size = max(0.5, min(6.0, 3000.0 / max(len(samples), len(data), 1)))
    ax.scatter(data[:, 0], data[:, 1], s=size, c=_DATA_COLOUR, linewidths=0, label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=size, c=_SAMPLE_COLOUR, linewidths=0, label="samples")
    x, y = samples[:, 0], samples[:, 1]
    inside = (x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)
    outside = int((~inside).sum())
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.set_title(title + (f" ({outside} outside)" if outside else ""), fontsize=10)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _first_two_note(dim: int) -> str:
    return f" [first 2 of {dim} coords]" if dim > 2 else ""


def samples_figure(samples: Tensor, data: Tensor, title: str = "", size: float = 5.0) -> Figure:
    """The figure :func:`plot_samples` writes (samples (n, D) over data (m, D)), `size` inches square."""
    s, d = _points(samples, "samples"), _points(data, "data")
    if s.shape[1] != d.shape[1]:
        raise ValueError(f"samples and data must have the same dimension, got {s.shape[1]} and {d.shape[1]}")
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    _scatter_panel(ax, s, d, title + _first_two_note(s.shape[1]))
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    return fig


def plot_samples(samples: Tensor, data: Tensor, path: str | Path, title: str = "") -> Path:
    """Scatter generated samples (n, D) in colour over data (m, D) in grey, equal aspect.

    For D > 2 the first two coordinates are drawn and the title says so. Axes are fixed to the data's
    box plus a margin; samples falling outside are counted in the title.
    """
    return _save(samples_figure(samples, data, title), path)


def plot_trajectories(
    trajectory: Tensor,
    path: str | Path,
    n_paths: int = 200,
    title: str = "",
    times: Tensor | None = None,
) -> Path:
    """Draw the first `n_paths` paths of a 2-D trajectory (K+1, B, 2), each segment coloured by time.

    Segment k, from x_{t_k} to x_{t_{k+1}}, takes the colour of its midpoint time on a colormap;
    `times` (K+1,) defaults to an even grid on [0, 1]. Start points (t_0) and end points (t_K) are
    marked in two fixed colours.
    """
    traj = trajectory.detach().cpu().numpy() if isinstance(trajectory, Tensor) else np.asarray(trajectory)
    if traj.ndim != 3 or traj.shape[0] < 2 or traj.shape[2] != 2:
        raise ValueError(f"trajectory must have shape (K+1, B, 2) with K >= 1, got {traj.shape}")
    if n_paths < 1:
        raise ValueError(f"n_paths must be a positive int, got {n_paths}")
    t = np.linspace(0.0, 1.0, traj.shape[0]) if times is None else torch.as_tensor(times).cpu().numpy()
    if t.shape != (traj.shape[0],):
        raise ValueError(f"times must have shape ({traj.shape[0]},) like the trajectory, got {t.shape}")
    traj = traj[:, :n_paths].astype(np.float64)
    segments = np.stack([traj[:-1], traj[1:]], axis=2).reshape(-1, 2, 2)  # (K * paths, 2 ends, 2)
    midpoints = np.repeat(0.5 * (t[:-1] + t[1:]), traj.shape[1])  # matches the (K, paths) order
    fig = Figure(figsize=(5.6, 5))
    ax = fig.add_subplot()
    lines = LineCollection(segments, array=midpoints, cmap="viridis", linewidths=0.6, alpha=0.7)
    lines.set_clim(float(t.min()), float(t.max()))
    ax.add_collection(lines)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=6, c=_START_COLOUR, label=f"start (t={t[0]:g})", zorder=3)
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=6, c=_END_COLOUR, label=f"end (t={t[-1]:g})", zorder=3)
    ax.autoscale()
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(lines, ax=ax, label="t")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_run_losses(run_dir: str | Path, path: str | Path | None = None) -> Path | None:
    """RUN/loss.png (or `path`) from RUN/metrics.jsonl: the loss and every logged "loss_*" curve (NaN where a
    record lacks it, e.g. before a resume added it); None when the run logged nothing yet."""
    from straightflow.training.loggers import TRAIN_FILE, read_jsonl

    records = read_jsonl(Path(run_dir) / TRAIN_FILE)
    if not records:
        return None
    keys = sorted({k for r in records for k in r if k.startswith("loss_")})
    extra = {k: [r.get(k, float("nan")) for r in records] for k in keys}
    return plot_loss_curve([r["step"] for r in records], [r["loss"] for r in records],
                           path or Path(run_dir) / "loss.png", extra or None)


def plot_loss_curve(
    steps: Sequence[float],
    losses: Sequence[float],
    path: str | Path,
    extra: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Loss against step on a log y-axis, with a moving average (window ~ len / 20) once there are at
    least 20 points. `extra` adds named curves aligned with `steps` (e.g. a validation loss).

    A y-axis with zero or negative values falls back from log to symlog scale.
    """
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError(f"steps and losses must be 1-D, non-empty, same length; got {x.shape} and {y.shape}")
    curves = {name: np.asarray(values, dtype=np.float64) for name, values in (extra or {}).items()}
    for name, values in curves.items():
        if values.shape != x.shape:
            raise ValueError(f"extra curve '{name}' has shape {values.shape}, expected {x.shape} like steps")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(x, y, lw=0.8, alpha=0.4 if len(y) >= 20 else 1.0, label="loss")
    if len(y) >= 20:
        window = max(2, len(y) // 20)
        smooth = _moving_average(y, window)
        ax.plot(x[window - 1 :], smooth, lw=1.6, c="tab:blue", label=f"loss (mean of {window})")
    for name, values in curves.items():
        ax.plot(x, values, lw=1.2, label=name)
    every = np.concatenate([y, *curves.values()])
    every = every[np.isfinite(every)]
    ax.set_yscale("log" if len(every) and (every > 0).all() else "symlog")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sample_panels(panels: Mapping[str, Tensor], data: Tensor, path: str | Path, title: str = "") -> Path:
    """A row of scatter panels, one per label (e.g. "Euler 1", "Euler 4", "dopri5"), each showing
    that label's samples (n, D) over the data (m, D) on the same axes, so the panels compare.
    For D > 2 the first two coordinates are drawn.
    """
    if not panels:
        raise ValueError("plot_sample_panels needs at least one panel, got none")
    d = _points(data, "data")
    arrays = {label: _points(samples, f"samples of panel '{label}'") for label, samples in panels.items()}
    for label, s in arrays.items():
        if s.shape[1] != d.shape[1]:
            raise ValueError(f"panel '{label}' has dimension {s.shape[1]}, the data {d.shape[1]}")
    fig = Figure(figsize=(3.2 * len(arrays), 3.4))
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    for ax, (label, s) in zip(axes, arrays.items(), strict=True):
        _scatter_panel(ax, s, d, label)
        ax.set_xticks([])
        ax.set_yticks([])
    suptitle = title + _first_two_note(d.shape[1])
    if suptitle:
        fig.suptitle(suptitle, y=1.03)
    return _save(fig, path)


def plot_trajectory_panels(
    panels: Mapping[str, Tensor],
    path: str | Path,
    n_paths: int = 200,
    title: str = "",
    times: Mapping[str, Tensor] | None = None,
) -> Path:
    """A row of trajectory panels on shared axes (e.g. before / after reflow), one per label: each a 2-D
    trajectory (K+1, B, 2) drawn as in :func:`plot_trajectories` (first `n_paths` paths, segments coloured
    by time on [0, 1] unless `times[label]` (K+1,) is given, start and end points marked)."""
    if not panels:
        raise ValueError("plot_trajectory_panels needs at least one panel, got none")
    if n_paths < 1:
        raise ValueError(f"n_paths must be a positive int, got {n_paths}")
    arrays = {}
    for label, trajectory in panels.items():
        traj = trajectory.detach().cpu().numpy() if isinstance(trajectory, Tensor) else np.asarray(trajectory)
        if traj.ndim != 3 or traj.shape[0] < 2 or traj.shape[2] != 2:
            raise ValueError(f"trajectory of panel '{label}' must have shape (K+1, B, 2) with K >= 1, got {traj.shape}")
        arrays[label] = traj[:, :n_paths].astype(np.float64)
    (x_lo, x_hi), (y_lo, y_hi) = _limits(np.concatenate([a.reshape(-1, 2) for a in arrays.values()]))
    fig = Figure(figsize=(3.6 * len(arrays) + 0.8, 3.9), layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    lines = None
    for ax, (label, traj) in zip(axes, arrays.items(), strict=True):
        given = (times or {}).get(label)
        t = np.linspace(0.0, 1.0, traj.shape[0]) if given is None else torch.as_tensor(given).cpu().numpy()
        if t.shape != (traj.shape[0],):
            raise ValueError(f"times of panel '{label}' must have shape ({traj.shape[0]},), got {t.shape}")
        segments = np.stack([traj[:-1], traj[1:]], axis=2).reshape(-1, 2, 2)
        midpoints = np.repeat(0.5 * (t[:-1] + t[1:]), traj.shape[1])
        lines = LineCollection(segments, array=midpoints, cmap="viridis", linewidths=0.6, alpha=0.7)
        lines.set_clim(0.0, 1.0)
        ax.add_collection(lines)
        ax.scatter(traj[0, :, 0], traj[0, :, 1], s=5, c=_START_COLOUR, label="x0", zorder=3)
        ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=5, c=_END_COLOUR, label="x1", zorder=3)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=10)
    axes[0].legend(loc="upper right", fontsize=8, markerscale=2)
    fig.colorbar(lines, ax=list(axes), label="t", shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
