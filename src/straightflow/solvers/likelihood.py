r"""Log-likelihood of a flow by the instantaneous change of variables, integrated with the ODE.

Along dx/dt = v(x, t) the continuity equation d_t p_t + div(p_t v) = 0 gives (seed 002, Lagrangian view)

    d/dt log p_t(x(t)) = -div v(x(t), t).

Augment the state with a(t) = log p_t(x(t)) - log p_1(x(1)), so that da/dt = -div v and a(1) = 0. The one
augmented field F(x, a, t) = (v(x, t), -div v(x, t)) serves both directions:

- backward, data -> noise (:func:`log_likelihood`): start at (x1, 0) at t = 1, integrate to t = 0; then
  a(0) = int_0^1 div v(x_t, t) dt and

      log p_1(x1) = log p_0(x0) - int_0^1 div v(x_t, t) dt = log p_0(x0) - a(0);

- forward, noise -> data (:func:`sample_with_log_prob`): start at (x0, 0) at t = 0, integrate to t = 1 (the
  same pass as sampling); then a(1) = -int_0^1 div v dt and log p_1(x1) = log p_0(x0) + a(1).

Both run through :func:`straightflow.solvers.integrate.odeint` on the flat state (B, D + 1) = [x, a] (x
flattened), with dopri5 (error control over x and a together, as in FFJORD) or a fixed-step solver. The
divergence is exact or Hutchinson (:mod:`straightflow.solvers.divergence`); Hutchinson probes are drawn
once and reused along the whole trajectory, so the augmented ODE is an ordinary smooth ODE and dopri5's
step control is not fooled by noise. With ``create_graph=True`` the solve keeps its graph: gradients of
log p flow to the parameters of v (maximum-likelihood training of a CNF).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from straightflow.solvers.divergence import PROBE_KINDS, DivergenceFn, divergence_fn, make_probes, resolve_estimator
from straightflow.solvers.integrate import SOLVERS, ODESolution, odeint
from straightflow.types import AverageVelocityField, VelocityField

__all__ = [
    "LikelihoodOptions",
    "likelihood_options",
    "LikelihoodResult",
    "ODESolutionWithLogProb",
    "standard_normal_log_prob",
    "augmented_field",
    "log_likelihood",
    "sample_with_log_prob",
    "instantaneous_velocity",
]

LogProbFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LikelihoodOptions:
    """How the augmented ODE is solved, one object from the command line through every layer to the solve.

    solver: "dopri5" (tolerances rtol, atol) or a fixed-step solver with ``steps`` steps. estimator: "auto"
    (exact for D <= 16), "exact" or "hutchinson" with ``probes_k`` probes per point of ``probe_kind``
    ("rademacher" or "gaussian"). Bad values are one-line ValueErrors when the options are made.
    """

    solver: str = "dopri5"
    steps: int = 32
    rtol: float = 1e-5
    atol: float = 1e-5
    estimator: str = "auto"
    probes_k: int = 1
    probe_kind: str = "rademacher"

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose from: {', '.join(SOLVERS)}")
        if not self.rtol > 0:
            raise ValueError(f"rtol must be > 0, got {self.rtol}")
        if not self.atol > 0:
            raise ValueError(f"atol must be > 0, got {self.atol}")
        if isinstance(self.probes_k, bool) or not isinstance(self.probes_k, int) or self.probes_k < 1:
            raise ValueError(f"number of probes must be an int >= 1, got {self.probes_k!r}")
        resolve_estimator(self.estimator, 1)  # checks the name
        if self.probe_kind not in PROBE_KINDS:
            raise ValueError(f"unknown probe kind {self.probe_kind!r}; choose from: {', '.join(PROBE_KINDS)}")


def likelihood_options(options: LikelihoodOptions | None = None, **settings: Any) -> LikelihoodOptions:
    """`options` (default: LikelihoodOptions()) with the fields named in `settings` replaced, so that callers
    may pass an options object, keywords (solver="rk4", steps=8), or both."""
    known = [f.name for f in fields(LikelihoodOptions)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"unknown likelihood options {unknown}; choose from: {', '.join(known)}")
    return replace(options or LikelihoodOptions(), **settings)


@dataclass(frozen=True)
class LikelihoodResult:
    """log_prob (B,) = log p_1(x1); x0 (B, *D) the point reached at t = 0; source_log_prob (B,) = log p_0(x0);
    divergence_integral (B,) = int_0^1 div v dt (so log_prob = source_log_prob - divergence_integral);
    nfe the number of evaluations of the augmented field (each one v call plus its divergence);
    estimator "exact" or "hutchinson" and probes the number of probes per point (0 for exact)."""

    log_prob: Tensor
    x0: Tensor
    source_log_prob: Tensor
    divergence_integral: Tensor
    nfe: int
    estimator: str
    probes: int


@dataclass(frozen=True)
class ODESolutionWithLogProb(ODESolution):
    """An ODESolution (x at t = 1, nfe, trajectory, times) plus log_prob (B,) = log p_1(x) and
    source_log_prob (B,) = log p_0(x0)."""

    log_prob: Tensor
    source_log_prob: Tensor


def standard_normal_log_prob(x: Tensor) -> Tensor:
    """log N(x; 0, I) summed over all entries: (B, *D) -> (B,)."""
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * flat.pow(2).sum(1) - 0.5 * math.log(2 * math.pi) * flat.shape[1]


def instantaneous_velocity(u: AverageVelocityField) -> VelocityField:
    """v(x, t) = u(x, t, t): the instantaneous velocity of an average-velocity (MeanFlow) field."""
    return lambda x, t: u(x, t, t)


def augmented_field(div: DivergenceFn, shape: tuple[int, ...]) -> VelocityField:
    """F(z, t) = [v(x, t), -div v(x, t)] on the flat state z = [x.flatten(), a]: (B, D + 1), x of shape (B, *shape)."""

    def field(z: Tensor, t: Tensor) -> Tensor:
        x = z[:, :-1].reshape(z.shape[0], *shape)
        vx, d = div(x, t)
        return torch.cat([vx.reshape(z.shape[0], -1), -d.to(vx.dtype)[:, None]], dim=1)

    return field


def _solve_augmented(
    v: VelocityField, x: Tensor, t0: float, t1: float, opts: LikelihoodOptions, generator: torch.Generator | None,
    create_graph: bool, return_trajectory: bool,
) -> tuple[ODESolution, str, int]:
    if x.dim() < 2:
        raise ValueError(f"x must be (B, *D), got shape {tuple(x.shape)}")
    shape = tuple(x.shape[1:])
    kind = resolve_estimator(opts.estimator, math.prod(shape))
    probes = None
    if kind == "hutchinson":
        probes = make_probes(opts.probe_kind, opts.probes_k, tuple(x.shape), generator, dtype=x.dtype, device=x.device)
    field = augmented_field(divergence_fn(v, kind, probes, create_graph), shape)
    z = torch.cat([x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0], 1)], dim=1)
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        sol = odeint(field, z, solver=opts.solver, steps=opts.steps, t0=t0, t1=t1, rtol=opts.rtol, atol=opts.atol,
                     return_trajectory=return_trajectory)
    return sol, kind, (opts.probes_k if kind == "hutchinson" else 0)


def log_likelihood(
    v: VelocityField,
    x1: Tensor,
    source_log_prob: LogProbFn | None = None,
    options: LikelihoodOptions | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = False,
    **settings: Any,
) -> LikelihoodResult:
    """log p_1(x1) = log p_0(x0) - int_0^1 div v(x_t, t) dt, by integrating [x, a] from t = 1 back to t = 0.

    x1: (B, *D) data points. source_log_prob: log p_0, (B, *D) -> (B,) (default N(0, I)). options /
    settings: the solver and divergence estimator (:class:`LikelihoodOptions`, keywords override its fields);
    Hutchinson probes are drawn from ``generator`` and kept fixed along the trajectory. ``create_graph`` keeps
    gradients (to x1 and v's parameters); otherwise the result is detached.
    """
    opts = likelihood_options(options, **settings)
    sol, kind, k = _solve_augmented(v, x1, 1.0, 0.0, opts, generator, create_graph, False)
    x0 = sol.x[:, :-1].reshape(x1.shape)
    integral = sol.x[:, -1]  # a(0) = int_0^1 div v dt
    base = (source_log_prob or standard_normal_log_prob)(x0)
    return LikelihoodResult(base - integral, x0, base, integral, sol.nfe, kind, k)


def sample_with_log_prob(
    v: VelocityField,
    x0: Tensor,
    source_log_prob: LogProbFn | None = None,
    options: LikelihoodOptions | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = False,
    return_trajectory: bool = False,
    **settings: Any,
) -> ODESolutionWithLogProb:
    """Sample x1 from x0 (B, *D) and get log p_1(x1) = log p_0(x0) - int_0^1 div v dt in the same forward pass.

    Arguments as in :func:`log_likelihood`. The trajectory, if asked, is of x only: (K+1, B, *D). With a
    fixed-step solver the log-density is that solver's estimate of the CNF density at the sample it produced
    (its accuracy follows the solver's order and step count).
    """
    opts = likelihood_options(options, **settings)
    sol, _, _ = _solve_augmented(v, x0, 0.0, 1.0, opts, generator, create_graph, return_trajectory)
    b = x0.shape[0]
    x1 = sol.x[:, :-1].reshape(x0.shape)
    base = (source_log_prob or standard_normal_log_prob)(x0)
    traj = sol.trajectory[:, :, :-1].reshape(-1, b, *x0.shape[1:]) if sol.trajectory is not None else None
    return ODESolutionWithLogProb(x1, sol.nfe, traj, sol.times, base + sol.x[:, -1], base)
