"""Evaluate a run: sample with each requested solver and compare with held-out data.

Every number comes beside what fresh data score. The data give two independent held-out draws of n (for a
data file, two disjoint halves of its held-out rows, so n is capped at half of them): the *reference*, which
samples are scored against, and a *second* set scored the same way, the noise floor (for data that draw fresh
sets, the mean over several second draws: see :func:`noise_floor`). A perfect sampler scores W2 about 1.0x the
floor (1.0-1.2x in practice), so ratios, not raw W2, carry the meaning.

W2 alone can flatter: samples collapsed onto the data's densest ridges can score below the floor. So each row
also gives precision and recall (k-nearest-neighbour balls, Kynkaanniemi et al. 2019; the floor's pair
beside them, about 0.9-1.0 for fresh data at these n): a collapse keeps precision and loses recall, a smear
loses precision. And a kernel MMD over five bandwidths (0.25-4x one length scale, the reference's median
pairwise distance), which sees both, with its floor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from torch import Tensor

from straightflow.data.base import DataSource
from straightflow.metrics.coverage import precision_recall
from straightflow.metrics.distances import floor_ratio, median_distance, mmd_rbf, wasserstein2
from straightflow.metrics.flows import crossing_rate, straightness, transport_cost
from straightflow.progress import progress as reporter
from straightflow.report.tables import Column, Table
from straightflow.runs import Run, sample_run

__all__ = ["EvalRow", "EvalReport", "evaluate_run", "eval_table", "format_table", "noise_floor", "reference_trajectory"]


@dataclass
class EvalRow:
    solver: str
    steps: int
    nfe: int
    w2: float
    w2_ratio: float  # w2 / noise floor
    precision: float  # share of samples inside the reference's k-NN balls (k = 3)
    recall: float  # share of reference points inside the samples' k-NN balls
    mmd: float
    transport_cost: float  # E |x1 - x0|^2 of the coupling the sampler induces
    seconds: float


@dataclass
class EvalReport:
    run: str
    n: int
    noise_floor: float  # W2 of fresh data against the reference (noise_floor: mean of several draws if fresh)
    floor_precision: float  # the second held-out draw's precision and recall against the reference
    floor_recall: float
    floor_mmd: float
    straightness: float  # of the reference solve (see reference_trajectory)
    rows: list[EvalRow] = field(default_factory=list)
    # 2-D only: share of pairs of straight segments x0 -> x1 that cross, for the coupling of the reference
    # solve on min(n, 2000) points (Liu et al. 2023's crossing rate; see methods.rectified)
    crossing_rate: float | None = None
    note: str = ""  # e.g. why n is smaller than asked

    def to_dict(self) -> dict:
        return asdict(self)


FLOOR_DRAWS = 4  # second draws averaged into the W2 floor where the data draw fresh sets (toy sets)


def noise_floor(data, n: int, seed: int = 1, pair: tuple[Tensor, Tensor] | None = None,
                draws: int = FLOOR_DRAWS) -> float:
    """W2 against the reference held-out draw of what fresh data score: the score a perfect sampler can expect.

    Where the data draw fresh sets (no cap on held-out draws: toy sets, Gaussians) this is the mean over
    `draws` independent second draws. One draw alone is a noisy yardstick: at n = 4000 on 25 tiny clusters,
    W2 between two draws ranged 0.34-0.44 over four seeds, and a lucky-low floor makes every sampler look
    worse (or a high one better) by that much. A data file has only its held-out rows: one second draw, the
    other half (the two halves are disjoint). `pair`: ``data.heldout_pair(n, seed)`` when already drawn.
    """
    reference, second = data.heldout_pair(n, seed=seed) if pair is None else pair
    scores = [wasserstein2(second, reference)]
    if data.max_heldout_pair is None:
        for k in range(1, draws):  # heldout_pair(n, s)[1] is heldout(s + 1000): independent of the reference
            scores.append(wasserstein2(data.heldout_pair(n, seed=seed + 7919 * k)[1], reference))
    return sum(scores) / len(scores)


def reference_trajectory(run: Run, n: int, seed: int = 0, steps: int = 32) -> tuple[Tensor, Tensor]:
    """(trajectory (K+1, n, *D), times (K+1,)) of the run's reference solve, on the CPU, from the x0 that
    sample_run(seed=seed) starts from: rk4 with `steps` steps on a velocity field; the k Euler steps it was
    trained for on a k-step distilled run (method.time_sampler = "grid"); one jump for MeanFlow."""
    if run.average_velocity:
        sol = sample_run(run, n, steps=1, seed=seed, return_trajectory=True)
    elif run.config.method.time_sampler == "grid":
        sol = sample_run(run, n, solver="euler", steps=run.config.method.grid_steps, seed=seed,
                         return_trajectory=True)
    else:
        sol = sample_run(run, n, solver="rk4", steps=steps, seed=seed, return_trajectory=True)
    return sol.trajectory.cpu(), sol.times.cpu()


def _coupling_metrics(run: Run, n: int, seed: int) -> tuple[float, float | None]:
    """(straightness on min(n, 1000) paths, crossing rate of the coupling (x0, x1 = reference solve of x0) on
    min(n, 2000) points, None unless 2-D), from one reference solve."""
    m = min(n, 2000) if run.dim == 2 else min(n, 1000)
    trajectory, times = reference_trajectory(run, m, seed)
    bent = straightness(trajectory[:, :min(n, 1000)], times)
    return bent, crossing_rate(trajectory[0], trajectory[-1]) if run.dim == 2 else None


def evaluate_run(
    run: Run, specs: list[tuple[str, int]], n: int = 4000, seed: int = 0, heldout_seed: int = 1,
    label: int | None = None, guidance: float = 1.0, progress: bool = False, data: DataSource | None = None,
) -> EvalReport:
    """One row per (solver, steps) spec; `steps` is ignored by dopri5 (its NFE is reported instead).

    n is capped at what the data allow for two independent held-out draws (a data file: half its held-out
    rows); the report's `note` says so. `progress` reports the floor and each row as they finish
    (straightflow.progress). `data`: what to compare with (default: the run's training data, refused in one line
    if they changed since training, see :meth:`~straightflow.runs.Run.load_data`).
    """
    bar = reporter(total=len(specs) + 1, desc="eval", unit="rows", enabled=progress)
    data = run.load_data() if data is None else data
    note = ""
    if data.max_heldout_pair is not None and n > data.max_heldout_pair:
        note = (f"n = {data.max_heldout_pair}, not {n}: '{data.name}' holds {2 * data.max_heldout_pair}-"
                f"{2 * data.max_heldout_pair + 1} held-out rows, split in two independent halves")
        n = data.max_heldout_pair
    reference, second = data.heldout_pair(n, seed=heldout_seed)
    scale = median_distance(reference.reshape(n, -1).double())
    precision, recall = precision_recall(reference.reshape(n, -1), second.reshape(n, -1))
    bent, crossings = _coupling_metrics(run, n, seed)
    report = EvalReport(str(run.path), n, noise_floor(data, n, heldout_seed, (reference, second)), precision, recall,
                        mmd_rbf(second, reference, scale=scale), bent, note=note)
    report.crossing_rate = crossings
    x0 = run.draw_x0(n, seed)
    bar.set_postfix(floor=f"W2 {report.noise_floor:.4f}")
    bar.update(1)
    for solver, steps in specs:
        start = time.perf_counter()
        sol = sample_run(run, n, solver=solver, steps=steps, seed=seed, label=label, guidance=guidance,
                         return_trajectory=False)
        seconds = time.perf_counter() - start
        x = sol.x.cpu()
        w2 = wasserstein2(x, reference)
        precision, recall = precision_recall(reference.reshape(n, -1), x.reshape(n, -1))
        report.rows.append(EvalRow(
            solver, steps, sol.nfe, w2, floor_ratio(w2, report.noise_floor), precision, recall,
            mmd_rbf(x, reference, scale=scale), transport_cost(x0, x), seconds,
        ))
        bar.set_postfix(last=f"{solver} {steps}: W2/floor {report.rows[-1].w2_ratio:.2f}x")
        bar.update(1)
    bar.close()
    return report


FLOOR_NOTE = ("noise floor (row 'held-out'): the same metric between two independent held-out draws of equal n "
              "(W2: the mean over four second draws where the data draw fresh sets); "
              "a perfect sampler scores about 1x (W2/floor 1.0-1.2 in practice), precision and recall near the "
              "floor's")
EVAL_COLUMNS = [
    Column("solver", "solver"), Column("steps", "steps"), Column("nfe", "NFE"),
    Column("w2", "W2", ".4f", "data units"), Column("w2_ratio", "W2/floor", ".2f", suffix="x"),
    Column("precision", "precision", ".3f"), Column("recall", "recall", ".3f"), Column("mmd", "MMD", ".5f"),
    Column("transport_cost", "E|x1-x0|^2", ".3f", "data units^2"), Column("seconds", "time", ".2f", "s"),
]


def eval_table(report: EvalReport) -> Table:
    """The report as a :class:`~straightflow.report.tables.Table`: a 'held-out' row (the noise floor: a second
    held-out draw scored like the samples), then one row per sampler; run, n, straightness and crossing rate
    in the title, the floor's meaning and any note below."""
    floor = {"solver": "held-out", "w2": report.noise_floor, "w2_ratio": 1.0, "precision": report.floor_precision,
             "recall": report.floor_recall, "mmd": report.floor_mmd}
    title = f"run {report.run}  n={report.n}  straightness {report.straightness:.4f}"
    if report.crossing_rate is not None:
        title += f"  crossing rate {100 * report.crossing_rate:.3f}%"
    notes = [FLOOR_NOTE] + ([f"note: {report.note}"] if report.note else [])
    return Table(EVAL_COLUMNS, [floor, *(asdict(r) for r in report.rows)], title, notes)


def format_table(report: EvalReport) -> str:
    """Aligned text (see :func:`eval_table`): the floor row first, one line per sampler, the floor explained."""
    return eval_table(report).text()
