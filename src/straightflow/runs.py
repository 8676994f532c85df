"""A trained run on disk, and sampling from it: checkpoint -> model -> solver.

A run folder holds config.json, checkpoint.safetensors and metrics.jsonl (see training.trainer). The checkpoint's
metadata carry all that sampling needs (the sample shape, the source, the class names; see
:mod:`straightflow.training.provenance`), so a run samples from any directory without its training data;
the data are read only to evaluate against them (:meth:`Run.load_data`), after a check that they are the
data the run was trained on.
`sample_run` is the one place that knows which sampler a run's method needs: an ODE solver on v(x, t) for
flow matching and rectified flow, the average-velocity jump x <- x + (t_next - t) u(x, t, t_next) for
MeanFlow (and any k-step distilled model). A run trained on standardised data (data.standardize; the
statistics are in its metadata, see :mod:`straightflow.data.standardize`) samples in the model's units, and
`sample_run` maps every sample (and trajectory, and log p) back to the data's own units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from straightflow.conditions import ClassLabels, Condition, condition_from_meta
from straightflow.data.base import DataSource
from straightflow.data.fingerprint import check_record
from straightflow.data.images import image_shape, is_image_spec
from straightflow.data.standardize import Standardize, transform_from_meta
from straightflow.methods.guidance import guided_velocity
from straightflow.solvers.integrate import ODESolution, odeint
from straightflow.solvers.one_step import average_velocity_sample
from straightflow.training.build import build_source, build_target, load_network
from straightflow.training.config import RunConfig
from straightflow.training.device import pick_device
from straightflow.types import AverageVelocityField, VelocityField

__all__ = ["Run", "load_run", "sample_run", "run_field", "AVERAGE_VELOCITY_SOLVER"]

AVERAGE_VELOCITY_SOLVER = "meanflow"


@dataclass
class Run:
    """A loaded run: its config, network (EMA weights unless asked otherwise) and data description.

    meta: the checkpoint's metadata (config, step, shape, data and source records, class names, ...);
    weights: which weights `model` holds, "ema" or "model".
    """

    path: Path
    config: RunConfig
    model: nn.Module
    step: int
    dim: int
    num_classes: int
    device: torch.device
    meta: dict[str, Any] = field(default_factory=dict)
    weights: str = "ema"

    @property
    def condition(self) -> Condition | None:
        """What the network is conditioned on: class labels, a tensor condition, or None (metadata)."""
        return condition_from_meta(self.meta.get("condition"), self.num_classes)

    @property
    def transform(self) -> Standardize | None:
        """The per-feature standardisation the network was trained under (metadata "data_transform"), or None:
        x (data units) = transform.inverse(z) for z the network's units."""
        return transform_from_meta(self.meta.get("data_transform"), str(self.path))

    @property
    def average_velocity(self) -> bool:
        """True when the network is u(x, s, t) (MeanFlow), False for a velocity field v(x, t)."""
        return self.config.method.name == "meanflow"

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape D: recorded in the metadata; for runs saved before, read off the config."""
        if "shape" in self.meta:
            return tuple(int(n) for n in self.meta["shape"])
        d = self.config.data
        return image_shape(d.data, d.image_size) if is_image_spec(d.data) else (self.dim,)

    @property
    def class_names(self) -> list[str]:
        """Names of the classes of a labelled run (recorded in the metadata), else "0", "1", ..."""
        return list(self.meta.get("class_names") or [str(k) for k in range(self.num_classes)])

    def source(self) -> DataSource:
        """p0, without reading the training data: N(0, I) of the run's shape, or (data-to-data) the recorded
        source set, a file of which must be the one the run was trained from (ValueError if missing or changed)."""
        record = self.meta.get("source")
        if record is not None:
            check_record(record, "source")
        return build_source(self.config, self.shape)

    def load_data(self, spec: str | None = None) -> DataSource:
        """The data to evaluate against: the run's training data after a check that they are the ones it was
        trained on (a one-line ValueError if the recorded file or folder is missing or changed), or `spec` (a
        data set or file, read with the run's image options) to compare with other data deliberately."""
        record = self.meta.get("data")
        if spec is None and record is not None:
            check_record(record, "data")
        data = build_target(self.config, spec)
        if tuple(data.shape) != self.shape:
            raise ValueError(f"data '{spec or self.config.data.data}' have samples of shape {tuple(data.shape)}, "
                             f"but the run's are {self.shape}")
        return data

    def data_and_source(self) -> tuple[DataSource, DataSource]:
        """(:meth:`load_data`, :meth:`source`)."""
        return self.load_data(), self.source()

    def draw_x0(self, n: int, seed: int = 0) -> Tensor:
        """The x0 (n, *D) that sample_run(seed=seed) starts from: n draws of the source from a CPU generator
        seeded with `seed`."""
        return self.source().sample(n, torch.Generator().manual_seed(seed))


def load_run(path: str | Path, weights: str = "ema", device: str = "auto", model: nn.Module | None = None) -> Run:
    """Load RUN/checkpoint.safetensors into a fresh network in eval mode (or into `model`, for a run trained
    on a network of your own)."""
    model, cfg, meta, ckpt = load_network(path, weights, model)
    dev = pick_device(device)
    return Run(ckpt.parent, cfg, model.to(dev), int(meta["step"]), int(meta["dim"]), int(meta.get("num_classes", 0)),
               dev, meta, weights)


def sample_run(
    run: Run,
    n: int,
    solver: str = "euler",
    steps: int = 8,
    seed: int = 0,
    label: Tensor | int | None = None,
    guidance: float = 1.0,
    return_trajectory: bool = False,
    x0: Tensor | None = None,
    cond: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    mode_guidance: float = 0.0,
    with_logp: bool = False,
    probes: int = 1,
) -> ODESolution:
    """Draw n samples: x0 from the run's source (or given, (n, *D)), carried to t = 1.

    MeanFlow runs ignore `solver` and take `steps` average-velocity jumps on a uniform grid; flow-matching
    runs integrate v with `solver` (euler | midpoint | heun | rk4 with `steps`, or dopri5).
    `mode_guidance` = lambda > 0 adds lambda h grad(-div v) to each step (Hutchinson, `probes` per call);
    `with_logp` also returns log p of each sample (an ODESolutionWithLogProb): see straightflow.density.
    The condition: `label`, a class (int) or classes (n,); or `cond`, the run's condition per sample (n, ...)
    (class labels or a tensor condition), or one condition (without the batch axis) for every sample.
    """
    if n < 1:
        raise ValueError(f"number of samples must be >= 1, got {n}")
    if x0 is None:
        x0 = run.draw_x0(n, seed)
    x0 = x0.to(run.device)
    if label is not None and cond is not None:
        raise ValueError("pass the condition once: label= (classes) or cond=, not both")
    label = _condition_rows(run, label if cond is None else cond, x0.shape[0])
    if guidance != 1.0 and label is None:
        what = "a condition to guide towards (a class)" if run.condition is not None else "a conditional run"
        raise ValueError(f"classifier-free guidance {guidance:g} needs {what}; {run.path} is sampled "
                         f"{'without one' if run.condition is not None else 'unconditionally'}: use guidance 1")
    field_ = run_field(run, label, guidance)
    if mode_guidance or with_logp:
        from straightflow.density import sample_run_with_extras

        return _in_data_units(run, sample_run_with_extras(run, field_, x0, solver, steps, return_trajectory, rtol,
                                                          atol, mode_guidance, with_logp, probes, seed))
    with torch.no_grad():
        if run.average_velocity:
            return _in_data_units(run, average_velocity_sample(field_, x0, steps, return_trajectory=return_trajectory))
        sol = odeint(field_, x0, solver=solver, steps=steps, return_trajectory=return_trajectory, rtol=rtol, atol=atol)
        return _in_data_units(run, sol)


def run_field(
    run: Run, label: Tensor | None = None, guidance: float = 1.0
) -> VelocityField | AverageVelocityField:
    """The network as the field its sampler follows, conditional on `label` (rows, or None): u(x, s, t) for an
    average-velocity (MeanFlow) run, which folds guidance into training (so `guidance` must be 1); v(x, t) with
    classifier-free guidance weight `guidance` otherwise. x (B, *D), times (B,)."""
    if not run.average_velocity:
        return guided_velocity(run.model, label, guidance, run.condition)
    if guidance != 1.0:
        raise ValueError("MeanFlow folds guidance into training (method.omega/kappa); sample with guidance 1")
    model = run.model
    return lambda x, s, t: model(x, s, t, label=label)


def _in_data_units(run: Run, sol: ODESolution) -> ODESolution:
    """sol with x, the trajectory and log p mapped from the network's units to the data's (a run trained on
    standardised data): x = z * std + mean, log p_x(x) = log p_z(z) - sum_d log std_d."""
    transform = run.transform
    if transform is None:
        return sol
    changes: dict[str, Any] = {"x": transform.inverse(sol.x)}
    if sol.trajectory is not None:
        changes["trajectory"] = transform.inverse(sol.trajectory)
    if getattr(sol, "log_prob", None) is not None:
        changes["log_prob"] = sol.log_prob - transform.log_det_inverse
    return dataclasses.replace(sol, **changes)


def _condition_rows(run: Run, cond: Tensor | int | None, n: int) -> Tensor | None:
    """The condition as (n, ...) rows on the run's device: an int class repeated, one condition without the
    batch axis repeated, or n rows checked against the run's condition (a one-line error otherwise)."""
    if cond is None:
        return None
    condition = run.condition
    if condition is None:
        raise ValueError("a condition was given but this run is unconditional")
    if isinstance(cond, int) and not isinstance(cond, bool):
        if not isinstance(condition, ClassLabels) or not 0 <= cond < condition.num_classes:
            raise ValueError(f"class {cond} is out of range; this run has {run.num_classes} classes")
        return torch.full((n,), cond, dtype=torch.long, device=run.device)
    cond = torch.as_tensor(cond)
    single = cond.dim() == 0 if isinstance(condition, ClassLabels) else tuple(cond.shape) == condition.shape
    if single:
        cond = cond.expand(n, *cond.shape)
    cond = condition.check(cond.to(run.device), n)
    if isinstance(condition, ClassLabels) and bool(((cond < 0) | (cond >= condition.num_classes)).any()):
        raise ValueError(f"class labels must lie in 0..{condition.num_classes - 1}")
    return cond
