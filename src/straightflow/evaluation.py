"""Evaluate a run: sample with each requested solver and compare with held-out data.

W2 (exact OT) is always reported beside its noise floor, the W2 between two independent held-out draws of
the same size: a perfect sampler scores about 1.0-1.2x the floor, so ratios, not raw W2, carry the meaning.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from straightflow.metrics.distances import mmd_rbf, wasserstein2
from straightflow.metrics.flows import crossing_rate, straightness, transport_cost
from straightflow.runs import Run, sample_run

__all__ = ["EvalRow", "EvalReport", "evaluate_run", "format_table", "noise_floor"]


@dataclass
class EvalRow:
    solver: str
    steps: int
    nfe: int
    w2: float
    w2_ratio: float  # w2 / noise floor
    mmd: float
    transport_cost: float  # E |x1 - x0|^2 of the coupling the sampler induces
    seconds: float


@dataclass
class EvalReport:
    run: str
    n: int
    noise_floor: float
    straightness: float  # of the reference solve (dopri5 for velocity fields, 1 jump for MeanFlow)
    rows: list[EvalRow] = field(default_factory=list)
    # 2-D only: share of pairs of straight segments x0 -> x1 that cross, for the coupling of the reference
    # solve on min(n, 2000) points (Liu et al. 2023's crossing rate; see methods.rectified)
    crossing_rate: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def noise_floor(data, n: int, seed: int = 1) -> float:
    """W2 between two independent held-out draws of size n: the best score any sampler can expect."""
    return wasserstein2(data.heldout(n, seed=seed), data.heldout(n, seed=seed + 1000))


def _straightness(run: Run, n: int, seed: int) -> float:
    if run.average_velocity:
        sol = sample_run(run, n, steps=1, seed=seed, return_trajectory=True)
    else:
        sol = sample_run(run, n, solver="rk4", steps=32, seed=seed, return_trajectory=True)
    return straightness(sol.trajectory.cpu(), sol.times.cpu())


def _crossing_rate(run: Run, n: int, seed: int) -> float | None:
    """Crossing rate of the coupling (x0, x1 = reference solve of x0) on n points; None unless 2-D."""
    if run.dim != 2:
        return None
    from straightflow.methods.rectified import reference_trajectory

    trajectory, _ = reference_trajectory(run, n, seed)
    return crossing_rate(trajectory[0], trajectory[-1])


def evaluate_run(
    run: Run, specs: list[tuple[str, int]], n: int = 4000, seed: int = 0, heldout_seed: int = 1,
    label: int | None = None, guidance: float = 1.0,
) -> EvalReport:
    """One row per (solver, steps) spec; `steps` is ignored by dopri5 (its NFE is reported instead)."""
    data, _ = run.data_and_source()
    heldout = data.heldout(n, seed=heldout_seed)
    floor = noise_floor(data, n, heldout_seed)
    report = EvalReport(str(run.path), n, floor, _straightness(run, min(n, 1000), seed))
    report.crossing_rate = _crossing_rate(run, min(n, 2000), seed)
    for solver, steps in specs:
        start = time.perf_counter()
        sol = sample_run(run, n, solver=solver, steps=steps, seed=seed, label=label, guidance=guidance,
                         return_trajectory=False)
        seconds = time.perf_counter() - start
        x = sol.x.cpu()
        x0 = data_source_draw(run, n, seed)
        w2 = wasserstein2(x, heldout)
        report.rows.append(EvalRow(
            solver, steps, sol.nfe, w2, w2 / floor, mmd_rbf(x, heldout), transport_cost(x0, x), seconds
        ))
    return report


def data_source_draw(run: Run, n: int, seed: int) -> torch.Tensor:
    """The x0 that sample_run(seed=seed) starts from."""
    _, source = run.data_and_source()
    return source.sample(n, torch.Generator().manual_seed(seed))


def format_table(report: EvalReport) -> str:
    head = (f"run {report.run}  n={report.n}  W2 noise floor {report.noise_floor:.4f}  "
            f"straightness {report.straightness:.4f}")
    if report.crossing_rate is not None:
        head += f"  crossing rate {100 * report.crossing_rate:.3f}%"
    lines = [head, f"{'solver':<10}{'steps':>6}{'NFE':>6}{'W2':>9}{'W2/floor':>10}{'MMD':>10}"
             f"{'cost':>9}{'sec':>8}"]
    for r in report.rows:
        lines.append(f"{r.solver:<10}{r.steps:>6}{r.nfe:>6}{r.w2:>9.4f}{r.w2_ratio:>9.2f}x{r.mmd:>10.5f}"
                     f"{r.transport_cost:>9.3f}{r.seconds:>8.2f}")
    return "\n".join(lines)
