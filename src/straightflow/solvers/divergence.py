r"""Divergence of a velocity field, exactly or by Hutchinson's trace estimator.

For v(x, t) with x: (B, *D) and t: (B,), the divergence is the trace of the Jacobian J = dv/dx of each row,

    div v(x, t) = Tr J = sum_i dv_i / dx_i,          J_ij = dv_i / dx_j   (D x D per row, D = prod(*D)),

the quantity the continuity equation and the instantaneous change of variables need
(d/dt log p_t(x(t)) = -div v(x(t), t) along dx/dt = v).

- :func:`exact_divergence`: D vector-Jacobian products e_i^T J, batched with ``is_grads_batched`` in chunks
  of ``chunk_size`` dimensions; only the diagonal entries e_i^T J e_i are kept. Every chunk's partial trace is
  detached at once (unless ``create_graph``), so the memory beyond one chunk stays flat in D.
- :func:`hutchinson_divergence`: Tr J = E_u[u^T J u] for probes with E[u u^T] = I (Gaussian or
  Rademacher); one VJP per probe, all K probes in one batched backward. The estimate is unbiased; its
  variance per probe is 2 ||J_sym||_F^2 - 2 sum_i J_ii^2 for Rademacher and 2 ||J_sym||_F^2 for Gaussian
  probes (J_sym = (J + J^T) / 2), so Rademacher probes are never worse.
- :func:`choose_estimator`: exact for D <= ``EXACT_MAX_DIM`` (16), Hutchinson above.

Rows never mix: every quantity is per batch row, and a VJP of the summed outputs gives each row its own
gradient because row b of v depends on row b of x only (true of every model here; a model with batch norm
in training mode would break this).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from straightflow.types import VelocityField

__all__ = [
    "ESTIMATORS",
    "PROBE_KINDS",
    "EXACT_MAX_DIM",
    "exact_divergence",
    "hutchinson_divergence",
    "make_probes",
    "choose_estimator",
    "resolve_estimator",
    "jacobian",
    "divergence_fn",
]

ESTIMATORS: tuple[str, ...] = ("auto", "exact", "hutchinson")
PROBE_KINDS: tuple[str, ...] = ("rademacher", "gaussian")
# Exact costs D VJPs against K for Hutchinson. Up to 16 dimensions the D VJPs run as one batched backward
# (one chunk), which on a small MLP costs about as much as a handful of probes, and the trace then has no
# variance at all: no noise in the NLL, no noise fed to dopri5's step-size control. Beyond that the cost
# grows linearly in D while Hutchinson's stays at K VJPs.
EXACT_MAX_DIM = 16
_DEFAULT_CHUNK = 64

DivergenceFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _flat_dim(x: Tensor) -> int:
    if x.dim() < 2:
        raise ValueError(f"x must be (B, *D) with at least one data dimension, got shape {tuple(x.shape)}")
    return math.prod(x.shape[1:])


def _with_input_grad(x: Tensor, create_graph: bool) -> Tensor:
    """x ready for autograd: a fresh leaf, unless create_graph keeps x's own history (it must require grad)."""
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def exact_divergence(
    v: VelocityField, x: Tensor, t: Tensor, create_graph: bool = False, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """(v(x, t), div v(x, t)) with the exact trace: x (B, *D), t (B,) -> ((B, *D), (B,)).

    div = sum_i (e_i^T J)_i: the D VJPs e_i^T J run ``chunk_size`` at a time (default min(D, 64)) as one
    batched backward each. Without ``create_graph`` each chunk's diagonal is detached straight away and the
    outputs carry no graph: memory is one chunk's backward, whatever D. With ``create_graph`` the trace keeps
    its graph (to x and the parameters), for training through the likelihood; memory then grows with D.
    Works under ``torch.no_grad()`` (grad is enabled locally).
    """
    dim = _flat_dim(x)
    chunk = min(dim, _DEFAULT_CHUNK) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with torch.enable_grad():
        xg = _with_input_grad(x, create_graph)
        out = v(xg, t)
        b = out.shape[0]
        div = out.new_zeros(b)
        if not out.requires_grad:  # v does not depend on x (or on anything): J = 0
            return (out if create_graph else out.detach()), div
        for start in range(0, dim, chunk):
            idx = torch.arange(start, min(start + chunk, dim), device=x.device)
            c = idx.shape[0]
            basis = out.new_zeros(c, b, dim)
            basis[torch.arange(c, device=x.device), :, idx] = 1.0  # e_i for every row, (c, B, D)
            rows = torch.autograd.grad(
                out, xg, basis.reshape(c, *out.shape), retain_graph=True, create_graph=create_graph,
                is_grads_batched=True, allow_unused=True, materialize_grads=True,
            )[0].reshape(c, b, dim)
            diag = rows.gather(2, idx.view(c, 1, 1).expand(c, b, 1)).sum(dim=(0, 2))  # (B,)
            div = div + (diag if create_graph else diag.detach())
    if not create_graph:
        out = out.detach()
    return out, div


def hutchinson_divergence(
    v: VelocityField,
    x: Tensor,
    t: Tensor,
    probes: Tensor,
    create_graph: bool = False,
    per_probe: bool = False,
) -> tuple[Tensor, Tensor]:
    """(v(x, t), Hutchinson estimate of div v): x (B, *D), t (B,), probes (K, B, *D).

    estimate = (1/K) sum_k u_k^T J u_k, each u_k^T J by one VJP, the K of them in one batched backward.
    Unbiased when E[u u^T] = I (see :func:`make_probes`). ``per_probe`` returns the K estimates (K, B)
    instead of their mean (B,). ``create_graph`` keeps the graph (for training or for grad of the estimate).
    """
    _flat_dim(x)
    if probes.dim() != x.dim() + 1 or tuple(probes.shape[1:]) != tuple(x.shape):
        raise ValueError(f"probes must have shape (K, {', '.join(map(str, x.shape))}), got {tuple(probes.shape)}")
    with torch.enable_grad():
        xg = _with_input_grad(x, create_graph)
        out = v(xg, t)
        probes = probes.to(out.dtype)
        if not out.requires_grad:  # v does not depend on x: J = 0
            vjp = torch.zeros_like(probes)
        else:
            vjp = torch.autograd.grad(out, xg, probes, create_graph=create_graph, is_grads_batched=True,
                                      allow_unused=True, materialize_grads=True)[0]
        est = (vjp * probes).reshape(probes.shape[0], x.shape[0], -1).sum(-1)  # (K, B)
    if not create_graph:
        out, est = out.detach(), est.detach()
    return out, (est if per_probe else est.mean(0))


def make_probes(
    kind: str,
    k: int,
    x_shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """K probes per point, (K, *x_shape), with E[u u^T] = I: "rademacher" (+-1) or "gaussian" (N(0, I)).

    Drawn on the generator's device (CPU when None) and moved to ``device``: a seeded CPU generator gives
    the same probes on every device.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; choose from: {', '.join(PROBE_KINDS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"number of probes must be an int >= 1, got {k!r}")
    gen_device = generator.device if generator is not None else "cpu"
    shape = (k, *x_shape)
    if kind == "gaussian":
        u = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    else:
        u = torch.randint(0, 2, shape, generator=generator, device=gen_device).to(dtype).mul_(2).sub_(1)
    return u.to(device) if device is not None else u


def choose_estimator(dim: int) -> str:
    """"exact" for dim <= EXACT_MAX_DIM (16), else "hutchinson" (see EXACT_MAX_DIM for why)."""
    return "exact" if dim <= EXACT_MAX_DIM else "hutchinson"


def resolve_estimator(estimator: str, dim: int) -> str:
    """Check an estimator name ("auto", "exact", "hutchinson") and resolve "auto" by dimension."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown divergence estimator {estimator!r}; choose from: {', '.join(ESTIMATORS)}")
    return choose_estimator(dim) if estimator == "auto" else estimator


def divergence_fn(
    v: VelocityField, estimator: str, probes: Tensor | None = None, create_graph: bool = False
) -> DivergenceFn:
    """A function (x, t) -> (v(x, t), div v(x, t)) with the given (resolved) estimator and fixed probes."""
    if estimator == "exact":
        return lambda x, t: exact_divergence(v, x, t, create_graph=create_graph)
    if estimator == "hutchinson":
        if probes is None:
            raise ValueError("the hutchinson estimator needs probes (see make_probes)")
        return lambda x, t: hutchinson_divergence(v, x, t, probes, create_graph=create_graph)
    raise ValueError(f"unknown divergence estimator {estimator!r}; choose from: exact, hutchinson")


def jacobian(f: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(f(x), full Jacobian) of a row-wise map f: (B, D) -> (B, D); the Jacobian is (B, D, D), [b, i, j] = df_i/dx_j.

    D VJPs in one batched backward; meant for small D (2-D log-determinants).
    """
    if x.dim() != 2:
        raise ValueError(f"jacobian takes x of shape (B, D), got {tuple(x.shape)}")
    b, d = x.shape
    with torch.enable_grad():
        xg = _with_input_grad(x, create_graph)
        out = f(xg)
        eye = torch.eye(d, dtype=out.dtype, device=out.device)[:, None, :].expand(d, b, d)
        if out.requires_grad:
            rows = torch.autograd.grad(out, xg, eye, create_graph=create_graph, is_grads_batched=True,
                                       allow_unused=True, materialize_grads=True)[0]
        else:
            rows = torch.zeros_like(eye)
    jac = rows.permute(1, 0, 2)
    return (out, jac) if create_graph else (out.detach(), jac.detach())
