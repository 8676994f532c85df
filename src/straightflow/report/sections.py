"""What one run contributes to a report: figures (PNG data URIs) and tables, read from its folder or made fresh.

From the folder: config.json, metrics.jsonl (loss curves and the last training record), quality.jsonl and
snapshots/ (W2 against its floor during training, the last sample picture), eval.json (written by
`straightflow eval`) and nll.json (`straightflow likelihood`). Made fresh from the checkpoint: samples at each
requested NFE (one average-velocity jump per NFE for MeanFlow, Euler steps for velocity fields), trajectories
of the reference solve (vector data), and, for vector runs without an eval.json, a quick evaluation at those
NFEs (W2, precision, recall beside the noise floor) at n points.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from straightflow.metrics.distances import floor_ratio
from straightflow.report.tables import Column, Table
from straightflow.training.config import flatten_config
from straightflow.training.loggers import read_jsonl

__all__ = ["RunSection", "collect_run", "png_data_uri", "SECTIONS"]

# section key -> heading, in page order
SECTIONS = {
    "training": "Training curves", "quality": "Quality during training", "samples": "Samples at each NFE",
    "trajectories": "Trajectories", "metrics": "Metrics",
}
TRAIN_COLUMNS = [
    Column("step", "step"), Column("loss", "loss", ".4g"), Column("loss_unweighted", "unweighted loss", ".4g"),
    Column("lr", "lr", ".3g"), Column("grad_norm", "grad norm", ".3g"),
    Column("steps_per_s", "speed", ".1f", "steps/s"),
    Column("examples_per_s", "throughput", ".0f", "examples/s"),
]
NLL_COLUMNS = [
    Column("data", "data"), Column("n", "n"), Column("nll", "NLL", ".4f", "nats/point"),
    Column("nll_stderr", "+-", ".4f", "nats"), Column("bits_per_dim", "bits/dim", ".4f"),
    Column("data_nll", "true density NLL", ".4f", "nats/point"), Column("solver", "solver"),
    Column("nfe", "NFE", ".0f"),
]


@dataclass
class RunSection:
    """One run's part of the page: name, flattened config, summary numbers, and per section key (SECTIONS)
    its figures [(caption, data URI)], tables and notes."""

    name: str
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    images: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    tables: dict[str, list[Table]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def add_image(self, section: str, caption: str, uri: str) -> None:
        self.images.setdefault(section, []).append((caption, uri))

    def add_table(self, section: str, table: Table) -> None:
        self.tables.setdefault(section, []).append(table)

    def add_note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)


def png_bytes_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_data_uri(draw: Callable[[Path], Any]) -> str:
    """`draw(path)` writes a PNG (the plots.* functions do); returns it as a data: URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return png_bytes_uri(path.read_bytes())


def _sampler(average_velocity: bool, nfe: int) -> tuple[str, int]:
    return ("meanflow", nfe) if average_velocity else ("euler", nfe)


def _training(section: RunSection) -> None:
    from straightflow.plots.figures import plot_run_losses

    records = read_jsonl(section.path / "metrics.jsonl")
    if not records:
        section.add_note("training", "no metrics.jsonl records")
        return
    section.add_image("training", "loss", png_data_uri(lambda p: plot_run_losses(section.path, p)))
    last = records[-1]
    columns = [c for c in TRAIN_COLUMNS if c.key in last]
    section.add_table("training", Table(columns, [last], "last training record"))
    section.summary["loss"] = last["loss"]


def _quality(section: RunSection) -> None:
    records = read_jsonl(section.path / "quality.jsonl")
    if records and all("w2_ratio" in r for r in records):
        from matplotlib.figure import Figure

        def draw(path: Path) -> None:
            fig = Figure(figsize=(5, 3.2))
            ax = fig.add_subplot()
            ax.plot([r["step"] for r in records], [r["w2_ratio"] for r in records], marker="o", label="EMA samples")
            ax.axhline(1.0, ls="--", c="0.4", lw=1, label="floor (held-out data)")
            ax.set_xlabel("step")
            ax.set_ylabel("W2 / floor")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            fig.savefig(path, dpi=100, bbox_inches="tight")

        section.add_image("quality", "W2 / floor during training", png_data_uri(draw))
        columns = [Column("step", "step"), Column("w2", "W2", ".4f", "data units"),
                   Column("w2_floor", "floor", ".4f", "data units"), Column("w2_ratio", "W2/floor", ".2f", suffix="x")]
        section.add_table("quality", Table(columns, records[-1:], "last snapshot"))
    shots = sorted((section.path / "snapshots").glob("samples_*.png"))
    if shots:
        section.add_image("quality", f"samples at step {int(shots[-1].stem.split('_')[-1])}",
                          png_bytes_uri(shots[-1].read_bytes()))
    if not records and not shots:
        section.add_note("quality", "none logged (train with --sample-every K)")


def _samples(section: RunSection, run: Any, nfes: list[int], n: int, seed: int) -> None:
    from straightflow.image_evaluation import is_image_run, write_image_grid
    from straightflow.runs import sample_run

    if is_image_run(run):
        for k in nfes:
            solver, steps = _sampler(run.average_velocity, k)
            uri = png_data_uri(lambda p, s=solver, st=steps: write_image_grid(
                run, p, s, st, per_class=6, n=36, seed=seed, title=f"{s}, NFE {st}"))
            section.add_image("samples", f"NFE {k}", uri)
        return
    if run.dim < 2:
        section.add_note("samples", f"no scatter for {run.dim}-D data")
        return
    from straightflow.plots.figures import plot_sample_panels, plot_trajectories

    panels = {}
    for k in nfes:
        solver, steps = _sampler(run.average_velocity, k)
        panels[f"{solver}, NFE {k}"] = sample_run(run, n, solver=solver, steps=steps, seed=seed).x.cpu()
    heldout = run.load_data().heldout(n)
    section.add_image("samples", "samples (colour) over held-out data (grey)",
                      png_data_uri(lambda p: plot_sample_panels(panels, heldout, p)))
    from straightflow.evaluation import reference_trajectory

    trajectory, times = reference_trajectory(run, min(n, 256), seed)
    section.add_image("trajectories", "reference solve, coloured by time",
                      png_data_uri(lambda p: plot_trajectories(trajectory[..., :2], p, times=times)))


def _metrics(section: RunSection, run: Any, nfes: list[int], n: int, seed: int, evaluate: bool) -> None:
    from straightflow.evaluation import EvalReport, EvalRow, eval_table, evaluate_run
    from straightflow.image_evaluation import ImageEvalReport, ImageEvalRow, image_eval_table, is_image_run

    path = section.path / "eval.json"
    rows: list[dict[str, Any]] = []
    if path.is_file():
        d = json.loads(path.read_text())
        if d.get("rows") and "feature_fid" in d["rows"][0]:
            report = ImageEvalReport(**{**d, "rows": [ImageEvalRow(**r) for r in d["rows"]]})
            section.add_table("metrics", image_eval_table(report))
            rows = [{"nfe": r.nfe, "ratio": floor_ratio(r.feature_fid, report.floor_fid)} for r in report.rows]
        else:
            report = EvalReport(**{**d, "rows": [EvalRow(**r) for r in d["rows"]]})
            section.add_table("metrics", eval_table(report))
            rows = [{"nfe": r.nfe, "ratio": r.w2_ratio} for r in report.rows]
        section.add_note("metrics", f"from {path.name}")
    elif evaluate and run is not None and not is_image_run(run):
        report = evaluate_run(run, [_sampler(run.average_velocity, k) for k in nfes], n=n, seed=seed)
        section.add_table("metrics", eval_table(report))
        section.add_note("metrics", f"evaluated now at n={report.n} (no eval.json)")
        rows = [{"nfe": r.nfe, "ratio": r.w2_ratio} for r in report.rows]
    else:
        section.add_note("metrics", "no eval.json (run `straightflow eval RUN`)")
    for r in rows:
        section.summary.setdefault(f"nfe{int(r['nfe'])}", r["ratio"])
    nll = section.path / "nll.json"
    if nll.is_file():
        d = json.loads(nll.read_text())
        section.add_table("metrics", Table([c for c in NLL_COLUMNS if c.key in d], [d], f"likelihood ({nll.name})"))


def collect_run(path: str | Path, nfes: list[int], n: int = 1000, seed: int = 0, evaluate: bool = True,
                device: str = "cpu") -> RunSection:
    """Everything the report shows of the run in `path` (see the module doc). A part that cannot be made
    (e.g. the run's data file moved) becomes a note saying why, not a failed report."""
    from straightflow.runs import load_run

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run folder (no config.json); pass folders written by `straightflow train`")
    config = flatten_config(json.loads((path / "config.json").read_text()))
    section = RunSection(path.name or str(path), path, config)
    section.summary.update(method=config.get("method.name"), data=config.get("data.data"))
    _training(section)
    _quality(section)
    try:
        run = load_run(path, device=device)
    except ValueError as e:
        section.add_note("samples", f"not available: {e}")
        run = None
    if run is not None:
        section.summary["steps"] = run.step
        try:
            _samples(section, run, nfes, n, seed)
        except ValueError as e:
            section.add_note("samples", f"not available: {e}")
    try:
        _metrics(section, run, nfes, n, seed, evaluate)
    except ValueError as e:
        section.add_note("metrics", f"not available: {e}")
    return section
