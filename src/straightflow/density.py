r"""Densities of trained runs: log-likelihood (NLL, bits/dim), sampling with log p, and mode guidance.

Every run is a velocity field for this module: flow matching and rectified flow runs are v(x, t) itself;
MeanFlow (and k-step distilled) runs give v(x, t) = u(x, t, t), their instantaneous velocity, so
``straightflow likelihood`` reports the density of the CNF of u(x, t, t) (seed 002's log-likelihood).
Sampling a MeanFlow run takes average-velocity jumps x' = x + h u(x, s, t); with ``with_logp`` the density
of those samples is the discrete change of variables of the jump map,

    log p(x') = log p(x) - log |det(I + h d_x u(x, s, t))|,

exact for the map actually sampled (D <= 16: the Jacobian is formed in full).

Bits per dimension for image data. Pixels k in {0, ..., L-1} (L = ``levels``, 256) are stored scaled to
[-1, 1] (x = 2 k / (L-1) - 1). Uniform dequantisation draws y = k + w, w ~ U[0, 1), so y lies in [0, L);
the model sees x = y r / L - 1 (r = ``data_range`` = 2), a map with Jacobian (r / L) per dimension, hence

    -log p_y(y) = -log p_x(x) - D log(r / L),
    bits/dim = (NLL_x + D log(L / r)) / (D log 2)       (NLL_x in nats per point, D = entries per point),

and E_w[-log p_y(k + w)] >= -log P(k) (Jensen), so bits/dim bounds the discrete model's code length from
above. With L = 256 and r = 2: bits/dim = NLL_x / (D log 2) + 7.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from straightflow.methods.mode_guidance import mode_guidance_field, mode_guided_jumps
from straightflow.progress import progress as reporter
from straightflow.runs import run_field
from straightflow.solvers.divergence import EXACT_MAX_DIM, jacobian, resolve_estimator
from straightflow.solvers.integrate import ODESolution, check_grid, odeint, time_grid
from straightflow.solvers.likelihood import (
    LikelihoodOptions,
    LikelihoodResult,
    ODESolutionWithLogProb,
    instantaneous_velocity,
    likelihood_options,
    log_likelihood,
    sample_with_log_prob,
)
from straightflow.solvers.one_step import average_velocity_sample
from straightflow.training.distributed import all_gather_objects, world_info
from straightflow.types import AverageVelocityField, VelocityField, broadcast_time

__all__ = [
    "PROBE_SEED_OFFSET",
    "bits_per_dim",
    "dequantize",
    "run_velocity",
    "source_log_prob",
    "run_log_likelihood",
    "jumps_with_log_prob",
    "sample_run_with_extras",
]

# Probes (Hutchinson, mode guidance) drawn during `sample_run(seed=s)` come from the stream s + this offset,
# never the stream that drew x0.
PROBE_SEED_OFFSET = 0x9D0B_E5


def bits_per_dim(nll_nats: float | Tensor, dim: int, data_range: float = 2.0, levels: int = 256) -> float | Tensor:
    """(nll + D log(levels / data_range)) / (D log 2): bits/dim of dequantised data from the NLL (nats per
    point) of its scaled version (see the module docstring). 8-bit images in [-1, 1]: nll / (D ln 2) + 7."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not data_range > 0 or levels < 2:
        raise ValueError(f"need data_range > 0 and levels >= 2, got data_range={data_range}, levels={levels}")
    return (nll_nats + dim * math.log(levels / data_range)) / (dim * math.log(2.0))


def dequantize(
    x: Tensor, levels: int = 256, data_range: float = 2.0, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform dequantisation of quantised data x in [-r/2, r/2] (pixels x = r k / (L-1) - r/2):
    k = round((x + r/2) (L-1) / r), then x' = (k + w) r / L - r/2 with w ~ U[0, 1); x' lies in [-r/2, r/2)."""
    half = data_range / 2
    if bool((x < -half - 1e-6).any()) or bool((x > half + 1e-6).any()):
        raise ValueError(f"dequantize expects data in [{-half}, {half}], got values in "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    k = torch.round((x + half) * (levels - 1) / data_range).clamp(0, levels - 1)
    gen_device = generator.device if generator is not None else "cpu"
    w = torch.rand(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
    return (k + w) * (data_range / levels) - half


def run_velocity(run, label: Tensor | None = None, guidance: float = 1.0) -> VelocityField:
    """v(x, t) of a run: the network itself (guided with weight `guidance`), or u(x, t, t) for an
    average-velocity (MeanFlow) run, whose guidance is folded in by training (`guidance` is ignored)."""
    if run.average_velocity:
        return instantaneous_velocity(run_field(run, label))
    return run_field(run, label, guidance)


def source_log_prob(run) -> Callable[[Tensor], Tensor]:
    """log p_0 of the run's source, (B, *D) -> (B,); ValueError if that density is unknown."""
    source = run.source()
    if not getattr(source, "has_log_prob", False):
        raise ValueError(f"the run's source '{source.name}' has no known density, so no likelihood")
    return source.log_prob


@dataclass(frozen=True)
class RunLikelihood:
    """log_prob (n,) of every point; nfe per batch (list); estimator and probes per point (0 for exact)."""

    log_prob: Tensor
    nfe: list[int]
    estimator: str
    probes: int


def run_log_likelihood(
    run,
    x: Tensor,
    batch_size: int = 1000,
    label: Tensor | None = None,
    options: LikelihoodOptions | None = None,
    seed: int = 0,
    progress: bool = False,
    **settings: Any,
) -> RunLikelihood:
    """log p_1(x) under a run's flow for x (n, *D), solved batch by batch (probes from one seeded stream).

    options / settings: the solver and divergence estimator (:class:`~straightflow.solvers.likelihood.
    LikelihoodOptions`; keywords override its fields).

    ValueError if x's sample shape does not match the run's dimension. `progress` reports the batches this
    process solves (rank 0 only under torchrun; straightflow.progress).
    """
    if x.dim() < 2 or math.prod(x.shape[1:]) != run.dim:
        raise ValueError(f"data of shape {tuple(x.shape)} does not match the run's dimension {run.dim}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        raise ValueError("no points to evaluate")
    opts = likelihood_options(options, **settings)
    log_p0 = source_log_prob(run)
    transform = getattr(run, "transform", None)  # standardised data: log p_x(x) = log p_z(z) - sum_d log std_d
    if transform is not None:
        x = transform.forward(x)
    # Batch b draws its probes from a stream seeded by (seed, b), and under torchrun rank r takes the batches
    # with b % world_size == r: the merged result equals a single-process evaluation.
    ranks = world_info()
    mine: dict[int, tuple[Tensor, int]] = {}
    result: LikelihoodResult | None = None
    batches = list(enumerate(range(0, x.shape[0], batch_size)))[ranks.rank::ranks.world_size]
    for b, start in reporter(batches, desc="likelihood", unit="batches", enabled=progress and ranks.is_main):
        generator = torch.Generator().manual_seed((seed + PROBE_SEED_OFFSET + 7919 * b) % 2**32)
        xb = x[start:start + batch_size].to(run.device)
        lb = label[start:start + batch_size].to(run.device) if label is not None else None
        result = log_likelihood(run_velocity(run, lb), xb, log_p0, opts, generator=generator)
        mine[b] = (result.log_prob.cpu(), result.nfe)
    merged: dict[int, tuple[Tensor, int]] = {}
    for part in all_gather_objects(mine):
        merged.update(part)
    ordered = [merged[b] for b in sorted(merged)]
    est = resolve_estimator(opts.estimator, run.dim)
    log_prob = torch.cat([lp for lp, _ in ordered])
    if transform is not None:
        log_prob = log_prob - transform.log_det_inverse
    return RunLikelihood(log_prob, [nfe for _, nfe in ordered], est, opts.probes_k)


def jumps_with_log_prob(
    u: AverageVelocityField,
    x0: Tensor,
    log_p0: Callable[[Tensor], Tensor],
    steps: int = 1,
    grid: Tensor | None = None,
    return_trajectory: bool = False,
) -> ODESolutionWithLogProb:
    """Average-velocity jumps x <- x + h u(x, s, t) with log p carried by log |det(I + h d_x u)| per jump.

    x0: (B, D) with D <= 16 (the Jacobian is formed in full). nfe counts network calls (1 per jump for x;
    the Jacobian's D VJPs ride on the same call).
    """
    if x0.dim() != 2 or x0.shape[1] > EXACT_MAX_DIM:
        raise ValueError(f"the log-density of average-velocity jumps needs x of shape (B, D <= {EXACT_MAX_DIM}), "
                         f"got {tuple(x0.shape)}; use `straightflow likelihood` (the CNF of u(x, t, t)) instead")
    times = check_grid(grid) if grid is not None else time_grid(steps).tolist()
    b, d = x0.shape
    eye = torch.eye(d, dtype=x0.dtype, device=x0.device)
    x, traj, log_p = x0, [x0], log_p0(x0)
    base = log_p
    for ta, tb in zip(times[:-1], times[1:], strict=True):
        s = torch.full((b,), ta, dtype=x0.dtype, device=x0.device)
        t = torch.full((b,), tb, dtype=x0.dtype, device=x0.device)

        def step(y: Tensor, s=s, t=t) -> Tensor:
            return broadcast_time(t - s, y) * u(y, s, t)

        dx, jac = jacobian(step, x)  # h u and h d_x u, (B, D) and (B, D, D)
        x = x + dx
        log_p = log_p - torch.linalg.slogdet(eye + jac)[1]
        if return_trajectory:
            traj.append(x)
    times_t = torch.tensor(times, dtype=x0.dtype, device=x0.device) if return_trajectory else None
    return ODESolutionWithLogProb(x, len(times) - 1, torch.stack(traj) if return_trajectory else None, times_t,
                                  log_p, base)


def sample_run_with_extras(
    run,
    field_: VelocityField | AverageVelocityField,
    x0: Tensor,
    solver: str,
    steps: int,
    return_trajectory: bool,
    rtol: float,
    atol: float,
    mode_guidance: float = 0.0,
    with_logp: bool = False,
    probes: int = 1,
    seed: int = 0,
) -> ODESolution:
    """What :func:`straightflow.runs.sample_run` does with ``mode_guidance`` or ``with_logp`` (see there), on the
    run's field (:func:`straightflow.runs.run_field`: u(x, s, t) for MeanFlow, the guided v(x, t) otherwise)."""
    if mode_guidance and with_logp:
        raise ValueError("with_logp and mode_guidance cannot be combined (the guided field's divergence needs third "
                         "derivatives); sample with mode guidance, then run `straightflow likelihood` on the samples")
    generator = torch.Generator().manual_seed((seed + PROBE_SEED_OFFSET) % 2**32)
    with torch.no_grad():
        if run.average_velocity:
            if with_logp:
                return jumps_with_log_prob(field_, x0, source_log_prob(run), steps, return_trajectory=return_trajectory)
            guided = mode_guided_jumps(field_, mode_guidance, probes_k=probes, generator=generator)
            return average_velocity_sample(guided, x0, steps, return_trajectory=return_trajectory)
        if with_logp:
            options = LikelihoodOptions(solver=solver, steps=steps, rtol=rtol, atol=atol, probes_k=probes)
            return sample_with_log_prob(field_, x0, source_log_prob(run), options, generator=generator,
                                        return_trajectory=return_trajectory)
        field = mode_guidance_field(field_, mode_guidance, probes_k=probes, generator=generator)
        return odeint(field, x0, solver=solver, steps=steps, return_trajectory=return_trajectory, rtol=rtol,
                      atol=atol)
