"""Reflow (Liu, Gong & Liu, ICLR 2023): the (k+1)-th rectified flow, trained on the k-th one's couplings.

Draw X0, solve the ODE of the k-RF to get Z1 = Flow_k(X0) (:mod:`straightflow.pipelines.pairs`), and train the
(k+1)-RF by flow matching on the fixed pairs (X0, Z1), starting from the k-RF's weights
(:mod:`straightflow.methods.rectified` has the theory). A reflowed run is an ordinary flow-matching run (method
"fm") whose batches are rows of the fixed pairs (``data.pairs``), initialised from its parent
(``train.init_from``); its data and source stay the parent's, so evaluation still compares with the real data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from straightflow.evaluation import reference_trajectory
from straightflow.methods.rectified import positive_int
from straightflow.pipelines.pairs import reflow_pairs_from_run, require_velocity_run
from straightflow.runs import Run, load_run
from straightflow.training.checkpoint import CHECKPOINT, checkpoint_file, read_meta
from straightflow.training.config import RunConfig, apply_overrides, check_config, config_from_saved

__all__ = [
    "PAIRS_FOLDER", "reflow_config", "parent_of", "prepare_child", "train_child", "pairs_kwargs", "reflow", "lineage",
    "plot_reflow_trajectories",
]

PAIRS_FOLDER = "pairs"


def reflow_config(parent: RunConfig, pairs_dir: str | Path, parent_dir: str | Path, steps: int) -> RunConfig:
    """The (k+1)-RF's config from the k-RF's: same data, source, model and path; batches are the fixed
    pairs (data.pairs, coupling independent), t uniform again (a distilled parent's grid is dropped),
    weights start from the parent (train.init_from), `steps` training steps."""
    require_velocity_run(parent, str(parent_dir))
    sampler = "uniform" if parent.method.time_sampler == "grid" else parent.method.time_sampler
    return apply_overrides(parent, {
        "data.pairs": str(Path(pairs_dir).resolve()), "data.coupling": "independent",
        "method.time_sampler": sampler, "method.grid_steps": 1,
        "train.init_from": str(Path(parent_dir).resolve()), "train.steps": positive_int(steps, "training steps"),
    })


def parent_of(run_dir: str | Path) -> RunConfig:
    """A run's config read from its checkpoint's metadata (without reading its tensors)."""
    return config_from_saved(read_meta(checkpoint_file(run_dir))["config"])


def prepare_child(run_dir: str | Path, out: str | Path, resume: bool) -> tuple[RunConfig, Path]:
    """(the parent's config, out) for a run made from the flow-matching run in run_dir; ValueError if out is the
    parent itself or already holds a run (unless resuming)."""
    parent = parent_of(run_dir)
    require_velocity_run(parent, str(run_dir))
    out = Path(out)
    if Path(run_dir).resolve() == out.resolve():
        raise ValueError(f"--out {out} is the parent run itself; choose a new folder")
    if (out / CHECKPOINT).exists() and not resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    return parent, out


def train_child(cfg: RunConfig, out: Path, overrides: dict[str, Any] | None, resume: bool, progress: bool) -> Path:
    """Train cfg (with dotted `overrides`) into out, resuming its checkpoint if asked and present; returns out."""
    from straightflow.training.trainer import Trainer

    cfg = apply_overrides(cfg, overrides or {})
    resume = resume and (out / CHECKPOINT).exists()
    if not resume and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # left by a training killed before its first checkpoint
    trainer = Trainer(cfg, out, resume=resume, progress=progress)
    trainer.fit()
    return out


def pairs_kwargs(pair_options: dict[str, Any] | None) -> dict[str, Any]:
    """The pair options as keyword arguments of reflow_pairs_from_run; unknown names are a ValueError."""
    allowed = {"solver", "steps", "seed", "shard_size", "batch_size", "rtol", "atol", "guidance"}
    extra = set(pair_options or {}) - allowed
    if extra:
        raise ValueError(f"unknown pair options {sorted(extra)}; choose from: {', '.join(sorted(allowed))}")
    return dict(pair_options or {})


def reflow(
    run_dir: str | Path, out: str | Path, n_pairs: int, train_steps: int = 5000,
    pair_options: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
    resume: bool = False, progress: bool = False, device: str = "auto",
    on_shard: Callable[[int, int], None] | None = None,
) -> Path:
    """k-RF in run_dir -> (k+1)-RF in out: n_pairs pairs from the k-RF's flow in out/pairs (resumed if a
    previous call was interrupted), then `train_steps` of flow matching on them from the k-RF's weights.

    pair_options: generate_reflow_pairs settings (solver, steps, seed, shard_size, batch_size, rtol, atol,
    guidance); overrides: dotted config fields for the new run (e.g. {"optim.lr": 5e-4}).
    """
    n_pairs = positive_int(n_pairs, "--pairs (number of pairs)")
    parent, out = prepare_child(run_dir, out, resume)
    cfg = reflow_config(parent, out / PAIRS_FOLDER, run_dir, train_steps)
    check_config(apply_overrides(cfg, overrides or {}))  # bad settings fail now, not after the pairs
    reflow_pairs_from_run(load_run(run_dir, device=device), n_pairs, out / PAIRS_FOLDER, progress=on_shard,
                          **pairs_kwargs(pair_options))
    return train_child(cfg, out, overrides, resume, progress)


# --------------------------------------------------------------------------------------- pictures
def lineage(run: Run) -> list[Run]:
    """The run's ancestors by train.init_from, nearest first, loaded like the run (those that no longer
    load are skipped; a cycle stops the walk)."""
    out, seen, cfg = [], {str(Path(run.path).resolve())}, run.config
    while cfg.train.init_from and cfg.train.init_from not in seen:
        seen.add(cfg.train.init_from)
        try:
            parent = load_run(cfg.train.init_from, device=str(run.device))
        except ValueError:
            break
        out.append(parent)
        cfg = parent.config
    return out


def plot_reflow_trajectories(run: Run, path: str | Path, n_paths: int = 256, seed: int = 0,
                             title: str = "") -> Path:
    """Trajectories of a 2-D run's reference solve beside those of its parent (train.init_from), if it has
    one: the paper's before / after reflow figure. Both panels start from the same x0."""
    from straightflow.plots.figures import plot_trajectory_panels

    if run.dim != 2:
        raise ValueError(f"trajectory plots need 2-D data; {run.path} has dimension {run.dim}")
    panels, times = {}, {}
    for r, role in [(p, " (parent)") for p in lineage(run)[:1]] + [(run, "")]:
        label = f"{Path(r.path).name}{role}"
        panels[label], times[label] = reference_trajectory(r, n_paths, seed)
    return plot_trajectory_panels(panels, path, n_paths=n_paths, title=title, times=times)
