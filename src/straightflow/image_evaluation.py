"""Evaluate an image run: per (solver, steps), feature-FID, precision, recall and class accuracy.

Protocol (see :mod:`straightflow.metrics.images` and docs/images.md):

- features: the project's :class:`~straightflow.metrics.images.FeatureNet`, trained on the run's training
  split and cached by the data's hash;
- reference: up to `max_reference` training images (a seeded subset); feature-FID compares the n samples
  against all of them, precision/recall (k = 3) against the first n of them (equal set sizes);
- floor: the feature-FID of m = min(n, test size) held-out test images against the same reference, what
  fresh data score. FID is biased upward at small n, so only equal n compare: samples are scored at the same
  m too, as the mean feature-FID of the floor(n / m) disjoint chunks of m samples (digits hold 359 test
  images: floor and samples are both at m = 359). A model that reproduces training images can score below
  the floor: the reference is the training split;
- conditional runs draw balanced labels (sample i gets class i mod K) and report the share the classifier
  assigns to the requested class; guidance applies to velocity runs (MeanFlow folds it into training).

Samples are clamped to [-1, 1], like every image sample straightflow writes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from straightflow.data.images import ImageSource, is_image_spec
from straightflow.metrics import images as im
from straightflow.metrics.distances import floor_ratio
from straightflow.progress import progress as reporter
from straightflow.report.tables import Column, Table
from straightflow.runs import Run, sample_run

__all__ = ["ImageEvalRow", "ImageEvalReport", "is_image_run", "balanced_labels", "sample_images",
           "evaluate_images", "image_eval_table", "format_image_table", "clamp_images", "write_sample_grid",
           "write_image_grid"]


@dataclass
class ImageEvalRow:
    solver: str
    steps: int
    nfe: float  # network evaluations per sample (dopri5: mean over sampling batches)
    feature_fid: float
    precision: float
    recall: float
    class_accuracy: float | None  # conditional runs only
    seconds: float
    samples_per_s: float
    true_fid: float | None = None


@dataclass
class ImageEvalReport:
    run: str
    data: str
    n: int
    n_reference: int
    floor_fid: float  # held-out test images vs the reference, at m = min(n, test size)
    floor_note: str  # the sample size both floor and samples are scored at
    feature_net_accuracy: float  # the classifier's accuracy on the test split
    conditional: bool
    guidance: float
    rows: list[ImageEvalRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def is_image_run(run: Run) -> bool:
    """Whether a run was trained on an image data set."""
    return is_image_spec(run.config.data.data)


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """(n,) long: 0, 1, ..., K-1, 0, 1, ... (each class n / K times, up to one)."""
    return torch.arange(n) % num_classes


def sample_images(
    run: Run, n: int, solver: str = "euler", steps: int = 8, seed: int = 0, labels: Tensor | None = None,
    guidance: float = 1.0, batch: int = 500, rtol: float = 1e-5, atol: float = 1e-5, x0: Tensor | None = None,
) -> tuple[Tensor, float]:
    """(samples (n, C, H, W) in [-1, 1] on the CPU, mean NFE): x0 drawn for all n from `seed` (or given,
    (n, C, H, W): translation inputs), solved in batches of `batch` (labels (n,) long, or None)."""
    x0 = run.draw_x0(n, seed) if x0 is None else x0
    out, nfes = [], []
    for start in range(0, n, batch):
        chunk = slice(start, min(n, start + batch))
        label = None if labels is None else labels[chunk].to(run.device)
        sol = sample_run(run, chunk.stop - chunk.start, solver=solver, steps=steps, label=label, guidance=guidance,
                         x0=x0[chunk], rtol=rtol, atol=atol)
        out.append(sol.x.cpu().clamp(-1, 1))
        nfes.append(sol.nfe)
    return torch.cat(out), sum(nfes) / len(nfes)


def held_out_floor(test_feats: Tensor, ref_stats, n: int, g: torch.Generator) -> tuple[float, int]:
    """(feature-FID of m = min(n, M) random test images vs the reference, m), M = test size."""
    m = min(n, test_feats.shape[0])
    picked = test_feats[torch.randperm(test_feats.shape[0], generator=g)[:m]]
    return im.frechet_distance(*im.feature_stats(picked), *ref_stats), m


def fid_at(feats: Tensor, ref_stats, m: int) -> float:
    """Mean feature-FID against the reference over the disjoint chunks of m rows of feats (N, F), N >= m.

    Scores N samples at the sample size m of the floor (FID's bias depends on m), using all of them."""
    chunks = feats[: (feats.shape[0] // m) * m].split(m)
    return sum(im.frechet_distance(*im.feature_stats(c), *ref_stats) for c in chunks) / len(chunks)


def evaluate_images(
    run: Run, specs: list[tuple[str, int]], n: int = 1000, seed: int = 0, guidance: float = 1.0,
    max_reference: int = 10000, k: int = 3, batch: int = 500, cache=None, with_true_fid: bool = False,
    progress: bool = False, data: ImageSource | None = None,
) -> ImageEvalReport:
    """One row per (solver, steps) spec (MeanFlow: steps = jumps); see the module doc for the protocol.
    `progress` reports the feature network's training (first use only) and each row. `data`: the images to
    compare with (default: the run's training set, refused if it changed since training, see
    :meth:`~straightflow.runs.Run.load_data`)."""
    data = run.load_data() if data is None else data
    net = im.feature_network(data, cache, progress=progress)
    g = torch.Generator().manual_seed(seed + 12345)
    ref_index = torch.randperm(data.train.shape[0], generator=g)[:max_reference]
    reference = data.to_pixels(data.train[ref_index])
    ref_feats = im.extract(net, reference)[0]
    ref_stats = im.feature_stats(ref_feats)
    test_feats = im.extract(net, data.to_pixels(data.test))[0]
    floor, m = held_out_floor(test_feats, ref_stats, n, g)
    floor_note = f"n={m} for floor and samples" + (f" (samples: mean of {n // m} chunks of {m})" if n // m > 1 else "")
    conditional = run.num_classes > 0
    labels = balanced_labels(n, run.num_classes) if conditional else None
    report = ImageEvalReport(str(run.path), data.name, n, len(ref_index), floor, floor_note, net.test_accuracy,
                             conditional, guidance)
    bar = reporter(total=len(specs), desc="eval", unit="rows", enabled=progress)
    for solver, steps in specs:
        start = time.perf_counter()
        x, nfe = sample_images(run, n, solver, steps, seed, labels, 1.0 if run.average_velocity else guidance, batch)
        seconds = time.perf_counter() - start
        feats, logits = im.extract(net, x)
        fid = fid_at(feats, ref_stats, m)
        precision, recall = im.precision_recall(ref_feats[:n], feats, k)
        acc = float((logits.argmax(1) == labels).double().mean()) if conditional else None
        true = im.true_fid(x, reference) if with_true_fid else None
        report.rows.append(ImageEvalRow(solver, steps, nfe, fid, precision, recall, acc, seconds, n / seconds, true))
        bar.set_postfix(last=f"{solver} {steps}: feature-FID {fid:.3f} (floor {floor:.3f})")
        bar.update(1)
    bar.close()
    return report


IMAGE_FLOOR_NOTE = ("floor (row 'held-out'): feature-FID of held-out test images against the same reference at "
                    "equal n; a perfect sampler scores about 1x. Feature-FID uses this project's feature network, "
                    "not Inception: compare it only between runs on the same data")
IMAGE_COLUMNS = [
    Column("solver", "solver"), Column("steps", "steps"), Column("nfe", "NFE", ".1f"),
    Column("feature_fid", "feature-FID", ".3f"), Column("fid_ratio", "FID/floor", ".2f", suffix="x"),
    Column("precision", "precision", ".3f"), Column("recall", "recall", ".3f"),
    Column("class_accuracy", "class acc", ".3f"), Column("seconds", "time", ".2f", "s"),
    Column("samples_per_s", "rate", ".1f", "samples/s"),
]


def image_eval_table(report: ImageEvalReport) -> Table:
    """The report as a :class:`~straightflow.report.tables.Table`: a 'held-out' row (the floor), then one row
    per sampler (with an Inception FID column when computed); the protocol in the title, the floor explained
    below."""
    title = (f"run {report.run}  data {report.data}  n={report.n}  reference {report.n_reference} train images  "
             f"{report.floor_note}  feature-net test accuracy {report.feature_net_accuracy:.3f}"
             + (f"  guidance {report.guidance:g}" if report.conditional else ""))
    columns = list(IMAGE_COLUMNS)
    if any(r.true_fid is not None for r in report.rows):
        columns.append(Column("true_fid", "FID", ".2f"))
    floor = {"solver": "held-out", "feature_fid": report.floor_fid, "fid_ratio": 1.0}
    rows = [{**asdict(r), "fid_ratio": floor_ratio(r.feature_fid, report.floor_fid)}
            for r in report.rows]
    return Table(columns, [floor, *rows], title, [IMAGE_FLOOR_NOTE])


def format_image_table(report: ImageEvalReport) -> str:
    """Aligned text (see :func:`image_eval_table`): the floor row first, one line per sampler."""
    return image_eval_table(report).text()


def clamp_images(sol):
    """The solution with its samples x clamped to [-1, 1] (the pixel range)."""
    return dataclasses.replace(sol, x=sol.x.clamp(-1, 1))


def write_sample_grid(x: Tensor, path: str | Path, title: str = "", label: int | None = None) -> Path:
    """A grid PNG of up to 100 images x (N, C, H, W), 10 per row."""
    from straightflow.plots.images import plot_image_grid

    x = x[:100]
    nrow = min(10, x.shape[0])
    return plot_image_grid(x, path, nrow=nrow, title=title + (f", class {label}" if label is not None else ""))


def default_sampler(run: Run) -> tuple[str, int]:
    """(solver, steps) for pictures: one average-velocity jump for MeanFlow, dopri5 for velocity fields."""
    return ("meanflow", 1) if run.average_velocity else ("dopri5", 1)


def write_image_grid(
    run: Run, path: str | Path, solver: str | None = None, steps: int | None = None, per_class: int = 10,
    n: int = 100, seed: int = 0, guidance: float = 1.0, title: str | None = None,
) -> Path:
    """Sample a grid PNG: conditional runs get one row per class (`per_class` columns, rows named by class),
    unconditional runs n images in rows of 10. Default sampler: :func:`default_sampler`."""
    from straightflow.plots.images import plot_image_grid

    if solver is None:
        solver, steps = default_sampler(run)
    steps = 1 if steps is None else steps
    if run.num_classes > 0:
        labels = torch.arange(run.num_classes).repeat_interleave(per_class)
        x, nfe = sample_images(run, len(labels), solver, steps, seed, labels, guidance)
        nrow, rows = per_class, run.class_names
    else:
        x, nfe = sample_images(run, n, solver, steps, seed)
        nrow, rows = min(10, n), None
    head = title if title is not None else f"{run.config.method.name} on {run.config.data.data}: {solver}, NFE {nfe:g}"
    return plot_image_grid(x, path, nrow=nrow, title=head, row_labels=rows)
