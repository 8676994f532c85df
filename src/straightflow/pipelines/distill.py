"""Distillation of a flow: to k Euler steps on its own pairs (rectified-flow distillation), or into a one-step
MeanFlow student taught by its velocity (teacher distillation).

- k steps: flow matching on the flow's pairs (X0, Z1) with t restricted to the Euler grid {0, 1/k, ...,
  (k-1)/k} (``method.time_sampler = "grid"``), so that k Euler steps carry X0 to Z1; for k = 1 that is the
  paper's min_v E |(Z1 - Z0) - v(Z0, 0)|^2.
- MeanFlow: the student u(x, s, t) starts as the teacher (u = v_T(x, s)) and learns with the teacher's
  marginal velocity in its target (``method.teacher``), on the run's own data; no pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from straightflow.methods.rectified import positive_int
from straightflow.pipelines.pairs import check_pairs_source, reflow_pairs_from_run
from straightflow.pipelines.reflow import PAIRS_FOLDER, pairs_kwargs, prepare_child, reflow_config, train_child
from straightflow.runs import load_run
from straightflow.training.checkpoint import checkpoint_file, read_meta
from straightflow.training.config import RunConfig, apply_overrides, check_config

__all__ = ["distill_config", "distill", "distill_meanflow"]


def distill_config(
    parent: RunConfig, pairs_dir: str | Path, parent_dir: str | Path, k: int, steps: int
) -> RunConfig:
    """The k-step distilled run's config: flow matching on the parent's pairs at t in {0, ..., (k-1)/k}."""
    cfg = reflow_config(parent, pairs_dir, parent_dir, steps)
    return replace(cfg, method=replace(cfg.method, time_sampler="grid", grid_steps=positive_int(k, "k")))


def distill(
    run_dir: str | Path, out: str | Path, k: int = 1, n_pairs: int = 50_000, train_steps: int = 3000,
    pairs_dir: str | Path | None = None, pair_options: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = False, device: str = "auto",
    on_shard: Callable[[int, int], None] | None = None,
) -> Path:
    """Distil the flow in run_dir to k Euler steps, in out: on its own pairs, generated into out/pairs
    (n_pairs of them) unless `pairs_dir` names a complete pairs folder that run_dir generated (e.g. the
    pairs of a reflow from run_dir). The result samples with `--solver euler --steps k`."""
    k = positive_int(k, "k (distillation steps)")
    parent, out = prepare_child(run_dir, out, resume)
    cfg = distill_config(parent, pairs_dir or out / PAIRS_FOLDER, run_dir, k, train_steps)
    check_config(apply_overrides(cfg, overrides or {}))  # bad settings fail now, not after the pairs
    if pairs_dir is None:
        n_pairs = positive_int(n_pairs, "--pairs (number of pairs)")
        reflow_pairs_from_run(load_run(run_dir, device=device), n_pairs, out / PAIRS_FOLDER, progress=on_shard,
                              **pairs_kwargs(pair_options))
    else:
        check_pairs_source(pairs_dir, run_dir)  # by the SHA-256 of run_dir's checkpoint
    return train_child(cfg, out, overrides, resume, progress)


def distill_meanflow(
    run_dir: str | Path, out: str | Path, train_steps: int = 3000, guidance: float = 1.0,
    overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = False,
) -> Path:
    """Teacher distillation of the flow in run_dir into a one-step average-velocity model, in out: MeanFlow
    whose target uses the teacher's marginal velocity (method.teacher; guided at `guidance` when the teacher
    is conditional), started from the teacher's weights (the student begins as u(x, s, t) = v_T(x, s)).
    Batches come from the run's data and source, as in its own training; no pairs are generated. The result
    samples in one jump (`--steps 1`) or a few."""
    parent, out = prepare_child(run_dir, out, resume)
    meta = read_meta(checkpoint_file(run_dir))
    if guidance != 1.0 and not (meta.get("num_classes") or meta.get("condition")):
        raise ValueError(f"--guidance {guidance:g} needs a conditional teacher; {run_dir} is unconditional (use 1)")
    sampler = "uniform" if parent.method.time_sampler == "grid" else parent.method.time_sampler
    teacher = str(Path(run_dir).resolve())
    # p = 0 (plain squared error): the teacher's target has no conditional noise for the adaptive weight to damp
    # (benchmarks/digits.py: 1-NFE feature-FID 24.0 with p = 0 against 38.0 with p = 1 at equal steps). The
    # Lagrangian target (the teacher at the end of the student's jump) on every row (s != t everywhere): 1-NFE
    # 14.4-14.6 over three seeds, against 14.8-15.2 with 75% of rows s != t and 16.4-16.6 for the Eulerian
    # target, on digits at 2x the teacher's wall-clock (docs/benchmarks.md).
    cfg = apply_overrides(parent, {
        "method.name": "meanflow", "method.teacher": teacher, "method.omega": guidance, "method.kappa": 0.0,
        "method.weight_power": 0.0, "method.ratio": 1.0, "method.teacher_target": "lagrangian",
        "method.time_sampler": sampler, "method.grid_steps": 1, "data.pairs": "",
        "train.init_from": teacher, "train.steps": positive_int(train_steps, "training steps"),
    })
    return train_child(cfg, out, overrides, resume, progress)
