r"""Mode guidance at sampling (seed 002): push samples up the model density with g = grad_x(-div v).

Along the flow, d/dt log p_t(x(t)) = -div v(x(t), t): where div v < 0 the flow compresses and the density of
the moving point rises. The guidance vector

    g(x, t) = grad_x [-div v(x, t)]

points to where the compression is stronger, so the guided field

    v'(x, t) = v(x, t) + lambda g(x, t)

makes any fixed-step solver add lambda h g(x, t) to each step of size h (exactly so for Euler; for higher
order methods the term enters every stage). lambda = 0 is the plain sampler; lambda > 0 trades diversity for
points in higher-density regions. g is estimated by Hutchinson: with probes u_1..u_K (E[u u^T] = I),

    g ~ -grad_x (1/K) sum_k u_k^T J(x, t) u_k,

two backward passes per evaluation (one VJP with its graph, then its gradient), fresh probes every call
(drawn from ``generator``), unbiased because the probes do not depend on x. ``estimator="exact"`` takes
the gradient of the exact trace instead (D VJPs, fine in 2-D).

The field enables gradients locally, so it works inside ``torch.no_grad()`` sampling; its output is
detached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from straightflow.solvers.divergence import exact_divergence, hutchinson_divergence, make_probes
from straightflow.types import AverageVelocityField, VelocityField

__all__ = ["MODE_GUIDANCE_ESTIMATORS", "mode_guidance_vector", "mode_guidance_field", "mode_guided_jumps"]

MODE_GUIDANCE_ESTIMATORS = ("hutchinson", "exact")


def _check(lam: float, probes_k: int, estimator: str) -> None:
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or lam != lam:
        raise ValueError(f"mode guidance weight must be a real number, got {lam!r}")
    if isinstance(probes_k, bool) or not isinstance(probes_k, int) or probes_k < 1:
        raise ValueError(f"number of probes must be an int >= 1, got {probes_k!r}")
    if estimator not in MODE_GUIDANCE_ESTIMATORS:
        raise ValueError(
            f"unknown mode guidance estimator {estimator!r}; choose from: {', '.join(MODE_GUIDANCE_ESTIMATORS)}"
        )


def mode_guidance_vector(
    v: VelocityField,
    x: Tensor,
    t: Tensor,
    probes_k: int = 1,
    probe_kind: str = "rademacher",
    generator: torch.Generator | None = None,
    estimator: str = "hutchinson",
) -> tuple[Tensor, Tensor]:
    """(v(x, t), g(x, t)) with g = grad_x(-div v(x, t)) estimated as described above; x (B, *D), t (B,).

    Both outputs are detached, (B, *D).
    """
    _check(0.0, probes_k, estimator)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        if estimator == "exact":
            out, div = exact_divergence(v, xg, t, create_graph=True)
        else:
            probes = make_probes(probe_kind, probes_k, tuple(x.shape), generator, dtype=x.dtype, device=x.device)
            out, div = hutchinson_divergence(v, xg, t, probes, create_graph=True)
        if div.requires_grad:
            (grad_div,) = torch.autograd.grad(div.sum(), xg, allow_unused=True, materialize_grads=True)
        else:
            grad_div = torch.zeros_like(xg)
    return out.detach(), -grad_div.detach()


def mode_guidance_field(
    v: VelocityField,
    lam: float,
    probes_k: int = 1,
    probe_kind: str = "rademacher",
    generator: torch.Generator | None = None,
    estimator: str = "hutchinson",
) -> VelocityField:
    """v'(x, t) = v(x, t) + lam g(x, t), g = grad_x(-div v) (Hutchinson with ``probes_k`` fresh probes per call).

    lam = 0 returns v itself (no extra cost).
    """
    _check(lam, probes_k, estimator)
    if lam == 0:
        return v

    def field(x: Tensor, t: Tensor) -> Tensor:
        out, g = mode_guidance_vector(v, x, t, probes_k, probe_kind, generator, estimator)
        return out + lam * g

    return field


def mode_guided_jumps(
    u: AverageVelocityField,
    lam: float,
    probes_k: int = 1,
    probe_kind: str = "rademacher",
    generator: torch.Generator | None = None,
    estimator: str = "hutchinson",
) -> AverageVelocityField:
    """u'(x, s, t) = u(x, s, t) + lam g(x, s), g = grad_x(-div u(x, s, s)): each average-velocity jump
    x + (t - s) u' then adds lam (t - s) g, the mode guidance of MeanFlow's instantaneous field v = u(., s, s)."""
    _check(lam, probes_k, estimator)
    if lam == 0:
        return u

    def inst(s: Tensor):
        return lambda x, _t: u(x, s, s)

    def field(x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        _, g = mode_guidance_vector(inst(s), x, s, probes_k, probe_kind, generator, estimator)
        return u(x, s, t) + lam * g

    return field
