r"""Unpaired image-to-image translation: carry images of one domain to another with a trained flow.

A translation run is any run trained with an image set as its source (``--source IMAGESET --data IMAGESET``):
X0 ~ pi_0, the source domain, at t = 0 and X1 ~ pi_1, the target domain, at t = 1, one shape (C, H, W), pixels
in [-1, 1] as the data loaders produce them (level k of L is 2k/(L-1) - 1). The two domains are never paired:
1-RF trains on independent (or minibatch-OT) pairs, reflow and distillation on the pairs its own flow makes
(:mod:`straightflow.pipelines.reflow`, :mod:`straightflow.pipelines.distill`). Translating x is solving the flow
from x0 = x (``sample_run(run, x0=x)``): an ODE for a velocity run, average-velocity jumps for MeanFlow.

Evaluation (:func:`evaluate_translation`), on n held-out source images (the source's test split, which the
run never trained on) with their labels:

- class accuracy: the share of translations that a classifier trained on the *target* domain (the feature
  network of :mod:`straightflow.metrics.images`, fitted on the target's training split) assigns to the input's
  class (the untranslated inputs are scored too: what the domain gap costs that classifier);
- feature-FID to the target's training images, scored at m = min(n, target test size) beside the floor, the
  feature-FID of m held-out target images (:mod:`straightflow.image_evaluation`'s protocol);
- transport cost: E |y - x|^2, the squared distance between input and translation summed over pixels and
  averaged over images (:func:`straightflow.metrics.flows.transport_cost`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from straightflow.data.files import read_npy
from straightflow.data.image_files import IMAGE_SUFFIXES, list_image_files, read_image_files, write_image_files
from straightflow.data.images import is_image_spec
from straightflow.image_evaluation import fid_at, held_out_floor, sample_images
from straightflow.metrics import images as im
from straightflow.metrics.flows import transport_cost
from straightflow.report.tables import Column, Table
from straightflow.runs import Run
from straightflow.training.snapshots import default_sampler

__all__ = [
    "require_translation_run", "default_translation_sampler", "read_translation_inputs", "translate",
    "write_translation", "TranslationRow", "TranslationReport", "evaluate_translation",
]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma: RGB -> grey (Pillow's "L")
RANGE_SLACK = 1e-3  # pixels may exceed [-1, 1] by this much (round-off) before an input is refused


def require_translation_run(run: Run) -> None:
    """ValueError unless the run carries images of one set to another (data.source an image set)."""
    d = run.config.data
    if not (is_image_spec(d.source) and is_image_spec(d.data)):
        raise ValueError(f"{run.path} carries '{d.source}' to '{d.data}'; translation needs a run trained with "
                         "an image set as source and as data (train --source IMAGESET --data IMAGESET)")


def default_translation_sampler(run: Run) -> tuple[str, int]:
    """(solver, steps) when none is asked for: one average-velocity jump for MeanFlow, the k Euler steps a
    k-step distilled run was trained for, else 8 Euler steps."""
    method = run.config.method
    return default_sampler(method.name, method.time_sampler, method.grid_steps)


def _check_pixels(x: np.ndarray, where: str) -> None:
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{where} holds NaN or infinite pixels")
    if x.size and (x.min() < -1 - RANGE_SLACK or x.max() > 1 + RANGE_SLACK):
        raise ValueError(f"{where} has pixels in [{x.min():g}, {x.max():g}]; translate takes the model's pixel "
                         "space [-1, 1] (level k of L is 2k/(L-1) - 1), or a folder of image files")


def read_translation_inputs(path: str | Path, shape: Sequence[int]) -> tuple[Tensor, list[str]]:
    """(images (N, C, H, W) float32 in [-1, 1], a PNG name for each) from `path`, for a run of sample shape
    `shape` = (C, H, W):

    - a ``.npy`` of (N, C, H, W), or (N, H, W) when C = 1, pixels in [-1, 1]; names 00000.png, 00001.png, ...;
    - a folder of image files (flat, or one subfolder per class): each read with Pillow as RGB, its shorter
      side resized to H and centre-cropped (as folder:PATH data sets are), grey runs (C = 1) taking the
      ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B; level k maps to 2k/255 - 1; names keep the relative path.
    """
    c, h, w = (int(s) for s in shape)
    path = Path(path)
    if path.is_dir():
        files = [f for f, _ in list_image_files(path)[0]]
        if not files:
            raise ValueError(f"input folder {path} holds no images ({' '.join(IMAGE_SUFFIXES)})")
        if h != w:
            raise ValueError(f"folder inputs are resized to squares; this run takes {h}x{w} images (pass a .npy)")
        if c not in (1, 3):
            raise ValueError(f"folder inputs are grey or RGB; this run takes {c} channels (pass a .npy)")
        rgb = read_image_files(files, h).astype(np.float32)  # (N, 3, H, W) levels 0..255
        levels = np.rint(np.einsum("nchw,c->nhw", rgb, LUMA))[:, None] if c == 1 else rgb
        names = [f.relative_to(path).with_suffix(".png").as_posix() for f in files]
        return torch.from_numpy(levels / 127.5 - 1.0).float(), names
    if path.suffix.lower() != ".npy":
        raise ValueError(f"--input must be a .npy file or a folder of images, got {path}")
    if not path.is_file():
        raise ValueError(f"input file {path} does not exist")
    try:
        x = read_npy(path)
    except ValueError as err:
        raise ValueError(f"{err}; translate takes real pixels in [-1, 1]") from None
    if x.ndim == 3 and c == 1:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] < 1:
        grey = " or (N, H, W)" if c == 1 else ""
        raise ValueError(f"{path} holds an array of shape {x.shape}; translate takes (N, C, H, W){grey} with "
                         f"(C, H, W) = {(c, h, w)} and N >= 1")
    if x.shape[1] != c:
        raise ValueError(f"{path} holds images with {x.shape[1]} channels, but the run takes {c} "
                         f"(images of shape {(c, h, w)})")
    if x.shape[2:] != (h, w):
        raise ValueError(f"{path} holds {x.shape[2]}x{x.shape[3]} images, but the run takes {h}x{w}; resize them, "
                         f"or pass a folder of image files (resized to {h}x{w})")
    x = x.astype(np.float32)
    _check_pixels(x, str(path))
    return torch.from_numpy(x).clamp(-1, 1), [f"{i:05d}.png" for i in range(x.shape[0])]


def translate(
    run: Run, x: Tensor, solver: str | None = None, steps: int | None = None, batch: int = 500,
    rtol: float = 1e-5, atol: float = 1e-5,
) -> tuple[Tensor, float]:
    """(translations (N, C, H, W) in [-1, 1] on the CPU, mean NFE): the run's flow solved from x0 = x (N, C, H,
    W) in [-1, 1], `batch` images at a time, with `solver` and `steps` (default: default_translation_sampler)."""
    require_translation_run(run)
    if tuple(x.shape[1:]) != tuple(run.shape) or x.shape[0] < 1:
        raise ValueError(f"inputs have shape {tuple(x.shape)}; this run translates (N, *{tuple(run.shape)}), N >= 1")
    if solver is None:
        solver, default_steps = default_translation_sampler(run)
        steps = default_steps if steps is None else steps
    steps = 8 if steps is None else steps
    return sample_images(run, x.shape[0], solver, steps, batch=batch, rtol=rtol, atol=atol, x0=x.float())


def write_translation(out: str | Path, x: Tensor, y: Tensor, names: Sequence[str], title: str = "") -> dict:
    """Write OUT/translated.npy (N, C, H, W) in [-1, 1], OUT/images/NAME (8-bit PNGs of the translations) and
    OUT/grid.png (input | output, the first 50 pairs); returns {"npy", "images", "grid"} paths."""
    from straightflow.plots.images import plot_translation_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npy = out / "translated.npy"
    np.save(npy, y.cpu().numpy())
    write_image_files(y.cpu().numpy(), [out / "images" / name for name in names])
    grid = plot_translation_grid({"input": x, "output": y}, out / "grid.png", title=title)
    return {"npy": npy, "images": out / "images", "grid": grid}


# ----------------------------------------------------------------------------------------------- evaluation
@dataclass
class TranslationRow:
    name: str  # the model (e.g. "1-RF"), or "inputs" for the untranslated images
    solver: str
    steps: int
    nfe: float  # network evaluations per image (0 for the inputs)
    class_accuracy: float | None  # None when the source has no labels
    feature_fid: float
    transport_cost: float  # E |y - x|^2 over the n inputs
    seconds: float


@dataclass
class TranslationReport:
    source: str
    data: str
    n: int  # held-out source images translated
    m: int  # the sample size feature-FID (translations and floor) is scored at
    floor_fid: float  # m held-out target images against the same reference
    n_reference: int  # target training images in the reference
    feature_net_accuracy: float  # the target classifier's accuracy on the target's test split
    rows: list[TranslationRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> Table:
        """Rows: the floor ('held-out target'), the untranslated inputs, then each model."""
        columns = [Column("name", "model"), Column("solver", "solver"), Column("steps", "steps"),
                   Column("nfe", "NFE", ".1f"), Column("class_accuracy", "class acc", ".3f"),
                   Column("feature_fid", "feature-FID", ".3f"), Column("fid_ratio", "FID/floor", ".2f", suffix="x"),
                   Column("transport_cost", "transport cost", ".2f"), Column("seconds", "time", ".2f", "s")]
        ratio = (lambda f: f / self.floor_fid) if self.floor_fid > 0 else (lambda f: float("inf"))
        floor = {"name": "held-out target", "feature_fid": self.floor_fid, "fid_ratio": 1.0}
        rows = [{**asdict(r), "fid_ratio": ratio(r.feature_fid)} for r in self.rows]
        title = (f"{self.source} -> {self.data}: n={self.n} held-out source images; feature-FID at n={self.m} "
                 f"against {self.n_reference} target training images; target classifier test accuracy "
                 f"{self.feature_net_accuracy:.3f}")
        notes = ["class acc: the target-domain classifier's agreement with the input's label; transport cost: "
                 "E|y - x|^2 summed over pixels; feature-FID uses this project's feature network (not Inception)"]
        return Table(columns, [floor, *rows], title, notes)


def evaluate_translation(
    entries: Sequence[tuple[str, Run, str, int]], n: int = 1000, seed: int = 0, max_reference: int = 10000,
    batch: int = 500, cache: str | Path | None = None, progress: bool = False,
) -> TranslationReport:
    """Score translation runs on the same held-out inputs (see the module doc). entries: (name, run, solver,
    steps) per row; every run must carry the same source set to the same data set. n: held-out source images
    (at most the source's test size; fewer are used when it is smaller)."""
    if not entries:
        raise ValueError("evaluate_translation needs at least one (name, run, solver, steps) entry, got none")
    first = entries[0][1]
    for _, run, _, _ in entries:
        require_translation_run(run)
        d = run.config.data
        if (d.source, d.data) != (first.config.data.source, first.config.data.data):
            raise ValueError(f"{run.path} carries '{d.source}' to '{d.data}', not '{first.config.data.source}' to "
                             f"'{first.config.data.data}'; compare runs between one pair of domains")
    data, source = first.load_data(), first.source()
    net = im.feature_network(data, cache, progress=progress)
    g = torch.Generator().manual_seed(seed + 12345)
    ref_index = torch.randperm(data.train.shape[0], generator=g)[:max_reference]
    ref_stats = im.feature_stats(im.extract(net, data.to_pixels(data.train[ref_index]))[0])
    n = min(int(n), source.test.shape[0])
    x, labels = source.heldout_labeled(n, seed)
    floor, m = held_out_floor(im.extract(net, data.to_pixels(data.test))[0], ref_stats, n, g)
    report = TranslationReport(source.name, data.name, n, m, floor, len(ref_index), net.test_accuracy)

    def row(name: str, solver: str, steps: int, nfe: float, y: Tensor, seconds: float) -> TranslationRow:
        feats, logits = im.extract(net, y)
        acc = None if labels is None else float((logits.argmax(1) == labels).double().mean())
        return TranslationRow(name, solver, steps, nfe, acc, fid_at(feats, ref_stats, m), transport_cost(x, y),
                              seconds)

    report.rows.append(row("inputs", "-", 0, 0.0, x, 0.0))
    for name, run, solver, steps in entries:
        start = time.perf_counter()
        y, nfe = translate(run, x, solver, steps, batch)
        report.rows.append(row(name, solver, steps, nfe, y, time.perf_counter() - start))
    return report
