"""Rectified flow (Liu, Gong & Liu, ICLR 2023): reflow and distillation on the couplings a flow makes.

Our convention is the paper's: X0 ~ pi_0 is the source (noise, or a data set for data-to-data transport) at
t = 0, X1 ~ pi_1 the data at t = 1, X_t = t X1 + (1 - t) X0, and a flow dZ_t = v(Z_t, t) dt runs from
Z_0 = X0 to Z_1.

- 1-RF is flow matching on independent pairs (X0, X1) ~ pi_0 x pi_1.
- Reflow: draw X0, solve the ODE of the k-RF to get Z1 = Flow_k(X0), and train the (k+1)-RF by flow
  matching on the fixed pairs (X0, Z1), starting from the k-RF's weights. The new coupling has no larger
  transport cost E c(Z1 - Z0) for every convex c (the paper's Theorem 3.5) and its flow is straighter; the
  straight segments X0 -> Z1 cross less and less (:func:`coupling_report`).
- Distillation to k steps: flow matching on the k-RF's pairs with t restricted to the Euler grid
  {0, 1/k, ..., (k-1)/k} (``method.time_sampler = "grid"``), so that k Euler steps carry X0 to Z1. For k = 1
  that is exactly the paper's min_v E |(Z1 - Z0) - v(Z0, 0)|^2.

A reflowed or distilled run is an ordinary flow-matching run (method "fm") whose batches are rows of the
fixed pairs (``data.pairs``), initialised from its parent (``train.init_from``); its data and source stay
the parent's, so evaluation still compares with the real data. Pairs are stored in shards (see
:mod:`straightflow.data.pairs`); each shard is a pure function of (seed, shard index, settings), so an
interrupted generation resumes by skipping the shards already on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from straightflow.data.pairs import MANIFEST, load_pairs, read_shard, save_shard, shard_count, shard_path
from straightflow.metrics.flows import crossing_rate, transport_cost
from straightflow.solvers.integrate import SOLVERS, odeint
from straightflow.training.checkpoint import CHECKPOINT
from straightflow.training.config import RunConfig, apply_overrides, config_from_saved
from straightflow.training.distributed import barrier, world_info

__all__ = [
    "ConditionalVelocity", "LabelSampler", "generate_reflow_pairs", "load_pairs", "run_velocity",
    "reflow_pairs_from_run", "reflow_config", "distill_config", "reflow", "distill", "CouplingReport",
    "coupling_report", "independent_coupling", "reference_trajectory", "parent_of", "lineage",
    "plot_reflow_trajectories",
]

# v(x, t, label): x (B, *D), t (B,), label (B,) or None -> (B, *D)
ConditionalVelocity = Callable[[Tensor, Tensor, Tensor | None], Tensor]
# (m, generator) -> (m,) long class labels
LabelSampler = Callable[[int, torch.Generator], Tensor]

PAIRS_FOLDER = "pairs"


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    return value


def _shard_generator(seed: int, index: int) -> torch.Generator:
    # One stream per (seed, shard): a shard never depends on the shards before it.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + index) * 8 + 5)


def _solve_shard(
    velocity: ConditionalVelocity, x0: Tensor, label: Tensor | None, settings: dict[str, Any], device: torch.device
) -> Tensor:
    """x1 = Flow(x0) (m, *D) on the CPU, solved `batch_size` rows at a time."""
    out = []
    b = settings["batch_size"]
    with torch.no_grad():
        for start in range(0, x0.shape[0], b):
            xc = x0[start:start + b].to(device)
            lc = None if label is None else label[start:start + b].to(device)

            def v(x: Tensor, t: Tensor, lc: Tensor | None = lc) -> Tensor:
                return velocity(x, t, lc)

            sol = odeint(v, xc, solver=settings["solver"], steps=settings["steps"], rtol=settings["rtol"],
                         atol=settings["atol"])
            out.append(sol.x.to("cpu", torch.float32))
    return torch.cat(out)


def _clean_temporaries(folder: Path) -> None:
    """Remove temp files a killed writer left behind (.pairs-00003.safetensors.tmp-PID)."""
    for tmp in folder.glob(".pairs-*.safetensors.tmp-*"):
        tmp.unlink(missing_ok=True)


def _mismatch(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    return [f"{k}: {have.get(k)!r} on disk vs {v!r} now" for k, v in want.items() if have.get(k) != v]


def generate_reflow_pairs(
    velocity: ConditionalVelocity,
    source: Any,
    n: int,
    out_dir: str | Path,
    shard_size: int = 10_000,
    solver: str = "dopri5",
    steps: int = 100,
    seed: int = 0,
    label_sampler: LabelSampler | None = None,
    batch_size: int = 8192,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    device: str | torch.device = "cpu",
    info: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write n pairs (x0, x1 = Flow(x0)[, label]) to out_dir in shards, then its manifest; return out_dir.

    Shard i (rows [i * shard_size, min(n, (i + 1) * shard_size))): x0 = source.sample(m, g_i), label =
    label_sampler(m, g_i) for conditional flows, with g_i seeded by (seed, i) alone; x1 solves
    dx/dt = velocity(x, t, label) from t = 0 to 1 with `solver` (`steps` fixed steps, or dopri5 with
    rtol/atol), `batch_size` rows at a time. A shard already on disk with the same settings is kept, so a
    rerun after an interruption writes only the missing shards: no duplicates, no gaps, and the result
    equals an uninterrupted generation. A shard made with other settings is an error (choose a new folder).
    `info` (e.g. the source run) goes into the manifest; `progress(done, total)` is called per shard.
    """
    n = _positive_int(n, "number of pairs")
    shard_size = _positive_int(shard_size, "shard size")
    batch_size = _positive_int(batch_size, "solver batch size")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r} for reflow pairs; choose from: {', '.join(SOLVERS)}")
    steps = _positive_int(steps, "solver steps")
    folder = Path(out_dir)
    settings = {"seed": int(seed), "solver": solver, "steps": steps, "shard_size": shard_size,
                "batch_size": batch_size, "rtol": float(rtol), "atol": float(atol),
                "labels": label_sampler is not None}
    total = shard_count(n, shard_size)
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        bad = _mismatch(manifest, {**settings, "n": n})
        if bad:
            raise ValueError(f"{folder} already holds pairs made with other settings ({'; '.join(bad)}); "
                             "choose another folder or delete it")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    # Under torchrun each rank solves the shards i with i % world_size == rank; shards are pure functions of
    # (seed, i), so the merged folder equals a single-process generation, without duplicates or gaps.
    ranks = world_info()
    if ranks.is_main:  # one rank clears a killed writer's leftovers, before any rank writes its own
        _clean_temporaries(folder)
    barrier()
    device = torch.device(device)
    for i in range(ranks.rank, total, ranks.world_size):
        m = min(shard_size, n - i * shard_size)
        path = shard_path(folder, i)
        if path.is_file():
            try:
                _, meta = read_shard(folder, i)
            except ValueError:
                meta = None  # damaged: its content is a pure function of (seed, i), redo it
            if meta is not None:
                bad = _mismatch(meta, {**settings, "rows": m})
                if bad:
                    raise ValueError(f"{path} was made with other settings ({'; '.join(bad)}); "
                                     "choose another folder or delete it")
                if progress:
                    progress(i + 1, total)
                continue
        g = _shard_generator(seed, i)
        x0 = source.sample(m, g).to(torch.float32)
        label = label_sampler(m, g).long() if label_sampler is not None else None
        x1 = _solve_shard(velocity, x0, label, settings, device)
        save_shard(folder, i, x0, x1, label, settings)
        if progress:
            progress(i + 1, total)
    barrier()  # every shard is on disk before the manifest says the set is complete
    if ranks.is_main:
        shape = tuple(read_shard(folder, 0)[0]["x0"].shape[1:])
        manifest = {"n": n, "shards": total, "shape": list(shape), **settings, **(info or {})}
        tmp = manifest_path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, manifest_path)
    barrier()
    return folder


# --------------------------------------------------------------------------------------- from a run
def run_velocity(run: Any, guidance: float = 1.0) -> ConditionalVelocity:
    """v(x, t, label) of a loaded flow-matching run (classifier-free guidance weight `guidance`)."""
    from straightflow.methods.guidance import guided_velocity

    _require_velocity_run(run.config, str(run.path))

    def v(x: Tensor, t: Tensor, label: Tensor | None) -> Tensor:
        return guided_velocity(run.model, label, guidance, run.num_classes)(x, t)

    return v


def _require_velocity_run(cfg: RunConfig, where: str) -> None:
    if cfg.method.name != "fm":
        raise ValueError(f"{where} is a {cfg.method.name} run (method.name={cfg.method.name!r}); rectified flow "
                         "(reflow, distill) takes flow-matching runs (method.name='fm') only")


def reflow_pairs_from_run(
    run: Any, n: int, out_dir: str | Path, solver: str = "dopri5", steps: int = 100, seed: int = 0,
    shard_size: int = 10_000, batch_size: int = 8192, rtol: float = 1e-5, atol: float = 1e-5,
    guidance: float = 1.0, progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Pairs (x0 ~ the run's source, x1 = the run's flow of x0[, label ~ the data's labels]) in out_dir."""
    data, source = run.data_and_source()
    sampler = None
    if run.num_classes:
        def sampler(m: int, g: torch.Generator) -> Tensor:
            return data.sample_labeled(m, g)[1]
    info = {"source_run": str(Path(run.path).resolve()), "source_step": int(run.step),
            "source": run.config.data.source, "data": run.config.data.data, "guidance": float(guidance)}
    return generate_reflow_pairs(
        run_velocity(run, guidance), source, n, out_dir, shard_size=shard_size, solver=solver, steps=steps,
        seed=seed, label_sampler=sampler, batch_size=batch_size, rtol=rtol, atol=atol, device=run.device,
        info=info, progress=progress,
    )


# --------------------------------------------------------------------------------------- configs
def reflow_config(parent: RunConfig, pairs_dir: str | Path, parent_dir: str | Path, steps: int) -> RunConfig:
    """The (k+1)-RF's config from the k-RF's: same data, source, model and path; batches are the fixed
    pairs (data.pairs, coupling independent), t uniform again (a distilled parent's grid is dropped),
    weights start from the parent (train.init_from), `steps` training steps."""
    _require_velocity_run(parent, str(parent_dir))
    sampler = "uniform" if parent.method.time_sampler == "grid" else parent.method.time_sampler
    return apply_overrides(parent, {
        "data.pairs": str(Path(pairs_dir).resolve()), "data.coupling": "independent",
        "method.time_sampler": sampler, "method.grid_steps": 1,
        "train.init_from": str(Path(parent_dir).resolve()), "train.steps": _positive_int(steps, "training steps"),
    })


def distill_config(
    parent: RunConfig, pairs_dir: str | Path, parent_dir: str | Path, k: int, steps: int
) -> RunConfig:
    """The k-step distilled run's config: flow matching on the parent's pairs at t in {0, ..., (k-1)/k}."""
    cfg = reflow_config(parent, pairs_dir, parent_dir, steps)
    return replace(cfg, method=replace(cfg.method, time_sampler="grid", grid_steps=_positive_int(k, "k")))


def parent_of(run_dir: str | Path) -> RunConfig:
    """A run's config read from its checkpoint (without building the network)."""
    from straightflow.training.checkpoint import checkpoint_file, load_checkpoint

    _, meta = load_checkpoint(checkpoint_file(run_dir))
    return config_from_saved(meta["config"])


def _prepare(run_dir: str | Path, out: str | Path, resume: bool) -> tuple[RunConfig, Path]:
    parent = parent_of(run_dir)
    _require_velocity_run(parent, str(run_dir))
    out = Path(out)
    if Path(run_dir).resolve() == out.resolve():
        raise ValueError(f"--out {out} is the parent run itself; choose a new folder")
    if (out / CHECKPOINT).exists() and not resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    return parent, out


def _train(cfg: RunConfig, out: Path, overrides: dict[str, Any] | None, resume: bool, progress: bool) -> Path:
    from straightflow.training.trainer import Trainer

    cfg = apply_overrides(cfg, overrides or {})
    resume = resume and (out / CHECKPOINT).exists()
    if not resume and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()  # left by a training killed before its first checkpoint
    trainer = Trainer(cfg, out, resume=resume, progress=progress)
    trainer.fit()
    return out


def _pairs_kwargs(pair_options: dict[str, Any] | None) -> dict[str, Any]:
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
    from straightflow.runs import load_run

    n_pairs = _positive_int(n_pairs, "--pairs (number of pairs)")
    parent, out = _prepare(run_dir, out, resume)
    cfg = reflow_config(parent, out / PAIRS_FOLDER, run_dir, train_steps)
    reflow_pairs_from_run(load_run(run_dir, device=device), n_pairs, out / PAIRS_FOLDER, progress=on_shard,
                          **_pairs_kwargs(pair_options))
    return _train(cfg, out, overrides, resume, progress)


def distill(
    run_dir: str | Path, out: str | Path, k: int = 1, n_pairs: int = 50_000, train_steps: int = 3000,
    pairs_dir: str | Path | None = None, pair_options: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = False, device: str = "auto",
    on_shard: Callable[[int, int], None] | None = None,
) -> Path:
    """Distil the flow in run_dir to k Euler steps, in out: on its own pairs, generated into out/pairs
    (n_pairs of them) unless `pairs_dir` names a complete pairs folder that run_dir generated (e.g. the
    pairs of a reflow from run_dir). The result samples with `--solver euler --steps k`."""
    from straightflow.runs import load_run

    k = _positive_int(k, "k (distillation steps)")
    parent, out = _prepare(run_dir, out, resume)
    if pairs_dir is None:
        n_pairs = _positive_int(n_pairs, "--pairs (number of pairs)")
        pairs_dir = reflow_pairs_from_run(load_run(run_dir, device=device), n_pairs, out / PAIRS_FOLDER,
                                          progress=on_shard, **_pairs_kwargs(pair_options))
    else:
        from straightflow.data.pairs import read_manifest

        made_by = read_manifest(pairs_dir).get("source_run")
        if made_by is None or Path(made_by).resolve() != Path(run_dir).resolve():
            raise ValueError(f"pairs in {pairs_dir} were generated by {made_by}, not by {run_dir}; distillation "
                             "needs the run's own pairs (omit --pairs-dir to generate them)")
    cfg = distill_config(parent, pairs_dir, run_dir, k, train_steps)
    return _train(cfg, out, overrides, resume, progress)


def distill_meanflow(
    run_dir: str | Path, out: str | Path, train_steps: int = 3000, guidance: float = 1.0,
    overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = False,
) -> Path:
    """Teacher distillation of the flow in run_dir into a one-step average-velocity model, in out: MeanFlow
    whose target uses the teacher's marginal velocity (method.teacher; guided at `guidance` when the teacher
    is conditional), started from the teacher's weights (the student begins as u(x, s, t) = v_T(x, s)).
    Batches come from the run's data and source, as in its own training; no pairs are generated. The result
    samples in one jump (`--steps 1`) or a few."""
    parent, out = _prepare(run_dir, out, resume)
    sampler = "uniform" if parent.method.time_sampler == "grid" else parent.method.time_sampler
    teacher = str(Path(run_dir).resolve())
    # p = 0 (plain squared error) and 75% of rows s != t: the teacher's target has no conditional noise for the
    # adaptive weight to damp, and the s = t rows are where the student starts out right (benchmarks/digits.py:
    # 1-NFE feature-FID 24.0 with p = 0 against 38.0 with p = 1 at equal steps; 22.3 with 75% s != t).
    cfg = apply_overrides(parent, {
        "method.name": "meanflow", "method.teacher": teacher, "method.omega": guidance, "method.kappa": 0.0,
        "method.weight_power": 0.0, "method.ratio": 0.75,
        "method.time_sampler": sampler, "method.grid_steps": 1, "data.pairs": "",
        "train.init_from": teacher, "train.steps": _positive_int(train_steps, "training steps"),
    })
    return _train(cfg, out, overrides, resume, progress)


# --------------------------------------------------------------------------------------- couplings
@dataclass(frozen=True)
class CouplingReport:
    """Metrics of a coupling (x0_i, x1_i): transport cost E |x1 - x0|^2 over all n pairs; for 2-D points
    the crossing rate, the share of pairs of straight segments x0_i -> x1_i that properly cross, over
    the first `crossing_points` pairs (all of their m (m - 1) / 2 pairs of segments); None otherwise."""

    n: int
    transport_cost: float
    crossing_rate: float | None
    crossing_points: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coupling_report(x0: Tensor, x1: Tensor, crossing_points: int = 2000) -> CouplingReport:
    """Transport cost and (2-D) crossing rate of the coupling x0 (n, *D) <-> x1 (n, *D), row by row."""
    cost = transport_cost(x0, x1)
    m = min(int(x0.shape[0]), _positive_int(crossing_points, "crossing points"))
    flat = x0.dim() == 2 and x0.shape[1] == 2
    rate = crossing_rate(x0[:m], x1[:m]) if flat and m >= 2 else None
    return CouplingReport(int(x0.shape[0]), cost, rate, m if rate is not None else 0)


def independent_coupling(data: Any, source: Any, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(x0, x1) drawn independently (pi_0 x pi_1): x0 the n source points a run's sample_run(seed=seed)
    starts from, x1 n held-out data points (data.heldout(n, seed))."""
    n = _positive_int(n, "number of pairs")
    return source.sample(n, torch.Generator().manual_seed(seed)), data.heldout(n, seed=seed)


def reference_trajectory(run: Any, n: int, seed: int = 0, steps: int = 32) -> tuple[Tensor, Tensor]:
    """(trajectory (K+1, n, *D), times (K+1,)) of the run's reference solve, on the CPU, from the x0 that
    sample_run(seed=seed) starts from: rk4 with `steps` steps on a velocity field; the k Euler steps it was
    trained for on a k-step distilled run (method.time_sampler = "grid"); one jump for MeanFlow."""
    from straightflow.runs import sample_run

    if run.average_velocity:
        sol = sample_run(run, n, steps=1, seed=seed, return_trajectory=True)
    elif run.config.method.time_sampler == "grid":
        sol = sample_run(run, n, solver="euler", steps=run.config.method.grid_steps, seed=seed,
                         return_trajectory=True)
    else:
        sol = sample_run(run, n, solver="rk4", steps=steps, seed=seed, return_trajectory=True)
    return sol.trajectory.cpu(), sol.times.cpu()


def lineage(run: Any) -> list[Any]:
    """The run's ancestors by train.init_from, nearest first, loaded like the run (those that no longer
    load are skipped; a cycle stops the walk)."""
    from straightflow.runs import load_run

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


def plot_reflow_trajectories(run: Any, path: str | Path, n_paths: int = 256, seed: int = 0,
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
