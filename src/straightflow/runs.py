"""A trained run on disk, and sampling from it: checkpoint -> model -> solver.

A run folder holds config.json, checkpoint.safetensors and metrics.jsonl (see training.trainer).
`sample_run` is the one place that knows which sampler a run's method needs: an ODE solver on v(x, t) for
flow matching and rectified flow, the average-velocity jump x <- x + (t_next - t) u(x, t, t_next) for
MeanFlow (and any k-step distilled model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from straightflow.methods.guidance import guided_velocity
from straightflow.solvers.integrate import ODESolution, odeint
from straightflow.solvers.one_step import average_velocity_sample
from straightflow.training.build import build_data, load_network
from straightflow.training.config import RunConfig
from straightflow.training.device import pick_device

__all__ = ["Run", "load_run", "sample_run", "AVERAGE_VELOCITY_SOLVER"]

AVERAGE_VELOCITY_SOLVER = "meanflow"


@dataclass
class Run:
    """A loaded run: its config, network (EMA weights unless asked otherwise) and data description."""

    path: Path
    config: RunConfig
    model: nn.Module
    step: int
    dim: int
    num_classes: int
    device: torch.device

    @property
    def average_velocity(self) -> bool:
        """True when the network is u(x, s, t) (MeanFlow), False for a velocity field v(x, t)."""
        return self.config.method.name == "meanflow"

    def data_and_source(self):
        return build_data(self.config)


def load_run(path: str | Path, weights: str = "ema", device: str = "auto") -> Run:
    """Load RUN/checkpoint.safetensors into a fresh network in eval mode."""
    model, cfg, meta, ckpt = load_network(path, weights)
    dev = pick_device(device)
    return Run(ckpt.parent, cfg, model.to(dev), int(meta["step"]), int(meta["dim"]), int(meta.get("num_classes", 0)),
               dev)


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
    """
    if n < 1:
        raise ValueError(f"number of samples must be >= 1, got {n}")
    if x0 is None:
        _, source = run.data_and_source()
        x0 = source.sample(n, torch.Generator().manual_seed(seed))
    x0 = x0.to(run.device)
    if isinstance(label, int):
        if not 0 <= label < run.num_classes:
            raise ValueError(f"class {label} is out of range; this run has {run.num_classes} classes")
        label = torch.full((x0.shape[0],), label, dtype=torch.long, device=run.device)
    if label is not None and run.num_classes == 0:
        raise ValueError("a class label was given but this run is unconditional")
    if mode_guidance or with_logp:
        from straightflow.density import sample_run_with_extras

        return sample_run_with_extras(run, x0, label, guidance, solver, steps, return_trajectory, rtol, atol,
                                      mode_guidance, with_logp, probes, seed)
    with torch.no_grad():
        if run.average_velocity:
            if guidance != 1.0:
                raise ValueError("MeanFlow folds guidance into training (method.omega/kappa); sample with guidance 1")
            model = run.model

            def u(x: Tensor, s: Tensor, t: Tensor) -> Tensor:
                return model(x, s, t, label=label)

            return average_velocity_sample(u, x0, steps, return_trajectory=return_trajectory)
        v = guided_velocity(run.model, label, guidance, run.num_classes)
        return odeint(v, x0, solver=solver, steps=steps, return_trajectory=return_trajectory, rtol=rtol, atol=atol)
