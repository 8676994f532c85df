r"""A numerical check of the continuity equation for a density path p_t and a velocity field v.

If v transports p_t (dx/dt = v(x, t) carries x ~ p_s to x ~ p_t), then everywhere

    d_t p + div(p v) = 0,

or, divided by p > 0 (the log form, well scaled where p is tiny),

    r(x, t) = d_t log p + div v + v . grad_x log p = 0.

:func:`continuity_residual` evaluates the three terms at points x (B, D) and times t (B,): the divergence
exactly and grad log p by autograd, d_t log p by autograd in t or by a central finite difference of step
``dt``. It takes any ``log_prob_fn(x, t)`` and ``velocity_fn(x, t)``, e.g. the closed forms of
:class:`straightflow.paths.gaussian.GaussianMixture`. A field that does not transport p (a perturbed one)
leaves a residual of the size of the perturbation's divergence and advection terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from straightflow.solvers.divergence import exact_divergence
from straightflow.types import VelocityField

__all__ = ["ContinuityTerms", "continuity_residual"]


@dataclass(frozen=True)
class ContinuityTerms:
    """The terms of the log-form continuity equation at B points, each (B,), detached."""

    log_p: Tensor  # log p_t(x)
    dt_log_p: Tensor  # d_t log p_t(x)
    div_v: Tensor  # div v(x, t)
    v_dot_grad_log_p: Tensor  # v . grad_x log p_t(x)

    @property
    def residual(self) -> Tensor:
        """r = d_t log p + div v + v . grad log p (0 for a field that transports p)."""
        return self.dt_log_p + self.div_v + self.v_dot_grad_log_p

    @property
    def density_residual(self) -> Tensor:
        """d_t p + div(p v) = p r, the continuity equation in density form."""
        return self.log_p.exp() * self.residual


def continuity_residual(
    log_prob_fn: Callable[[Tensor, Tensor], Tensor],
    velocity_fn: VelocityField,
    x: Tensor,
    t: Tensor,
    dt: float | None = None,
) -> ContinuityTerms:
    """Evaluate d_t log p, div v and v . grad log p at x (B, D), t (B,).

    dt None: d_t log p by autograd in t; a float: central difference (log p(x, t + dt) - log p(x, t - dt)) / 2dt
    (truncation O(dt^2)). Spatial terms are exact (autograd). Returns :class:`ContinuityTerms`.
    """
    if x.dim() != 2 or t.shape != (x.shape[0],):
        raise ValueError(f"expected x (B, D) and t (B,), got {tuple(x.shape)} and {tuple(t.shape)}")
    if dt is not None and not dt > 0:
        raise ValueError(f"finite-difference step dt must be > 0, got {dt}")
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        tg = t.detach().requires_grad_(dt is None)
        log_p = log_prob_fn(xg, tg)
        grads = torch.autograd.grad(log_p.sum(), [xg, tg] if dt is None else [xg], allow_unused=True,
                                    materialize_grads=True)
    grad_x = grads[0]
    if dt is None:
        dt_log_p = grads[1]
    else:
        with torch.no_grad():
            dt_log_p = (log_prob_fn(x, t + dt) - log_prob_fn(x, t - dt)) / (2 * dt)
    v, div = exact_divergence(velocity_fn, x, t)
    return ContinuityTerms(log_p.detach(), dt_log_p.detach(), div, (v * grad_x).sum(1).detach())
