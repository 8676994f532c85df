"""What a run samples while it trains: every train.sample_every steps, a picture and a cheap quality number.

The EMA network samples with a cheap sampler (:func:`default_sampler`: one average-velocity jump for
MeanFlow, k Euler steps for a k-step grid model, 8 Euler steps otherwise) from the same x0 (and balanced class
labels) every time, so the pictures compare across steps:

- vectors: n = min(1000, what the data allow) samples; the picture is their scatter over held-out data (first
  two coordinates), and the numbers are W2 against a held-out reference of n, the floor (W2 of a second
  independent held-out draw of n against the same reference, computed once) and their ratio, which a perfect
  sampler brings to about 1;
- images: a grid (one row per class for conditional runs), enlarged by an integer factor to at least 256
  pixels wide when the images are small; no metric (feature-FID needs a trained feature
  network, `straightflow eval` computes it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from straightflow.metrics.distances import floor_ratio, wasserstein2
from straightflow.solvers.integrate import odeint
from straightflow.solvers.one_step import average_velocity_sample

__all__ = ["Snapshot", "SnapshotMaker", "default_sampler", "SNAPSHOT_N"]

SNAPSHOT_N = 1000  # vector samples per snapshot: exact W2 at n = 1000 takes about 0.3 s on a CPU
_PER_CLASS, _GRID_N = 8, 64  # images: columns per class row (conditional), or images in all (unconditional)
_MIN_WIDTH = 256  # image grids narrower than this are enlarged by an integer factor (nearest neighbour)


def default_sampler(method: str, time_sampler: str = "uniform", grid_steps: int = 1) -> tuple[str, int]:
    """(solver, steps) a run samples with when none is asked for (snapshots, translate): one jump for MeanFlow
    ("meanflow", 1), the k Euler steps a k-step distilled (grid) run was trained for, else ("euler", 8)."""
    if method == "meanflow":
        return "meanflow", 1
    if time_sampler == "grid":
        return "euler", int(grid_steps)
    return "euler", 8


@dataclass
class Snapshot:
    """scalars: name -> value (empty for images); image: (H, W, 3) array or a matplotlib Figure."""

    scalars: dict[str, float]
    image: Any
    title: str


class SnapshotMaker:
    """Samples a network into a :class:`Snapshot`; held-out data, x0 and labels are drawn once, here.

    data / source: the run's DataSources (held-out draws stay on the CPU); condition: the run's condition
    (straightflow.conditions): class labels are drawn balanced (one row of the grid per class), a tensor
    condition is its null (the marginal the network learns from dropped conditions); None: unconditional.
    """

    def __init__(self, data: Any, source: Any, method: str, time_sampler: str = "uniform", grid_steps: int = 1,
                 condition: Any = None, seed: int = 0) -> None:
        self.images = len(data.shape) == 3
        self.average_velocity = method == "meanflow"
        self.solver, self.steps = default_sampler(method, time_sampler, grid_steps)
        classes = int(getattr(condition, "num_classes", 0) or 0)
        if self.images:
            n = classes * _PER_CLASS if classes else _GRID_N
            self.nrow = _PER_CLASS if classes else 8
            self.reference = None
        else:
            cap = data.max_heldout_pair
            n = SNAPSHOT_N if cap is None else max(1, min(SNAPSHOT_N, cap))
            self.reference, second = data.heldout_pair(n, seed=seed + 1)
            self.floor = wasserstein2(second, self.reference)
        self.labels = None
        if classes:
            index = torch.arange(n)
            self.labels = index // _PER_CLASS if self.images else index % classes
        elif condition is not None:
            self.labels = condition.null(n)
        self.x0 = source.heldout(n, seed=seed)

    @classmethod
    def for_run(cls, cfg: Any, data: Any, source: Any, condition: Any = None) -> SnapshotMaker:
        """The maker for a run's RunConfig (method, time sampler, seed), data, source and condition."""
        m = cfg.method
        return cls(data, source, m.name, m.time_sampler, m.grid_steps, condition, seed=cfg.train.seed)

    def log(self, model: nn.Module, device: torch.device, step: int, logger: Any) -> float:
        """Make a snapshot and send it to `logger` (training.loggers: scalars and the picture "samples" in
        group "quality"); returns the seconds it took (the trainer leaves them out of steps/s)."""
        start = time.perf_counter()
        shot = self(model, device, step)
        if shot.scalars:
            logger.log_scalars(step, shot.scalars, group="quality")
        logger.log_image(step, "samples", shot.image, group="quality")
        return time.perf_counter() - start

    @torch.no_grad()
    def sample(self, model: nn.Module, device: torch.device) -> Tensor:
        """(n, *D) samples of `model` on the CPU (images clamped to [-1, 1])."""
        x0 = self.x0.to(device)
        label = None if self.labels is None else self.labels.to(device)
        if self.average_velocity:
            sol = average_velocity_sample(lambda x, s, t: model(x, s, t, label=label), x0, self.steps)
        else:
            sol = odeint(lambda x, t: model(x, t, label=label), x0, solver=self.solver, steps=self.steps)
        x = sol.x.float().cpu()
        return x.clamp(-1, 1) if self.images else x

    def __call__(self, model: nn.Module, device: torch.device, step: int) -> Snapshot:
        x = self.sample(model, device)
        title = f"step {step}: {self.solver}, {self.steps} step(s)"
        if self.images:
            from straightflow.plots.images import image_grid

            grid = image_grid(x, self.nrow)
            k = max(1, _MIN_WIDTH // grid.shape[1])  # small images (8x8 digits) enlarged k times, pixels kept sharp
            return Snapshot({}, grid.repeat(k, axis=0).repeat(k, axis=1), title)
        from straightflow.plots.figures import samples_figure

        finite = torch.isfinite(x).all()
        w2 = wasserstein2(x, self.reference) if finite else float("inf")
        scalars = {"w2": w2, "w2_floor": self.floor, "w2_ratio": floor_ratio(w2, self.floor)}
        figure = samples_figure(x if finite else torch.nan_to_num(x), self.reference,
                                title=f"step {step}: W2 {scalars['w2_ratio']:.2f}x floor", size=4.0)
        return Snapshot(scalars, figure, title)

