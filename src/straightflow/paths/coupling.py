"""Couplings of a minibatch of source samples x0 with target samples x1 (and x1's labels).

A coupling re-pairs the rows of x0 with the rows of x1. Every coupling here keeps x1 and its label in place
and reorders (or resamples) x0, so class labels always travel with their x1.

- independent: the batches were drawn independently, so the identity pairing is already a draw from the
  product coupling p0 x p1.
- ot: exact minibatch optimal transport for the squared Euclidean cost (Pooladian et al. 2023, Tong et al.
  2024). With equal batch sizes and uniform weights the OT plan is a permutation (Birkhoff-von Neumann), so
  it is the assignment problem min_perm sum_j |x0_perm(j) - x1_j|^2, solved exactly by POT's network simplex
  (``ot.emd``, whose optimal vertex for uniform weights is a permutation matrix; about 2x faster than
  scipy.optimize.linear_sum_assignment at 256 x 256 in 2-D), with scipy's Hungarian-type solver as the fallback
  when the simplex stops early or returns a split plan.
- sinkhorn: entropic OT. The plan pi minimises <pi, C> - epsilon H(pi) with uniform marginals, for the cost
  C normalised by its mean so that epsilon is scale free. Pairs are then *sampled* from the plan (TorchCFM
  style): each x1_j draws its partner x0 from the column pi[:, j] / sum_i pi[i, j], so an x0 may be used
  twice and another not at all. As epsilon -> 0 the plan tends to the OT permutation.

Costs are solved on CPU in float64 (the assignment solver is a CPU routine; the Sinkhorn plan is small).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "CoupledBatch",
    "squared_distances",
    "sinkhorn_plan",
    "sample_rows",
    "optimal_assignment",
    "independent_coupling",
    "ot_coupling",
    "sinkhorn_coupling",
    "within_classes",
    "COUPLINGS",
    "get_coupling",
]


@dataclass(frozen=True)
class CoupledBatch:
    """x0 (B, *D) paired row by row with x1 (B, *D); label (B,) or None belongs to x1."""

    x0: Tensor
    x1: Tensor
    label: Tensor | None


def _check_batch(x0: Tensor, x1: Tensor, label: Tensor | None) -> None:
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape (B, *D), got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if label is not None and label.shape[:1] != x1.shape[:1]:
        raise ValueError(f"label must have batch size {x1.shape[0]}, got shape {tuple(label.shape)}")


def squared_distances(x0: Tensor, x1: Tensor) -> Tensor:
    """C[i, j] = |x0_i - x1_j|^2 over flattened features, in float64 on CPU; x0, x1: (B, *D) -> (B, B)."""
    a = x0.detach().reshape(x0.shape[0], -1).to("cpu", torch.float64)
    b = x1.detach().reshape(x1.shape[0], -1).to("cpu", torch.float64)
    # |a|^2 + |b|^2 - 2 a.b needs O(B^2) memory instead of O(B^2 D); float64 keeps cancellation harmless.
    cost = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return cost.clamp_min(0.0)


def sinkhorn_plan(cost: Tensor, epsilon: float, max_iter: int = 5000, tol: float = 1e-4) -> Tensor:
    """Entropic OT plan with uniform marginals by Sinkhorn iterations; cost (N, M) -> plan (N, M).

    pi = diag(u) K diag(v), K = exp(-C / epsilon), with u, v scaled alternately to match the marginals
    a = 1/N, b = 1/M (Cuturi 2013): two matrix-vector products a sweep. Where K would underflow (C / epsilon
    beyond what float64's exponent holds), the same iterations run on the potentials f = epsilon log u,
    g = epsilon log v with logsumexp (Peyre & Cuturi 2019, Remark 4.23), several times slower but finite for
    any epsilon. Stops when the L1 error of the row marginal (a probability vector) is below ``tol`` or after
    ``max_iter`` sweeps; the column marginal is exact after each v update. The default tol = 1e-4 is ample for
    sampling pairs; iterations grow roughly like 1 / epsilon.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    cost = cost.to(torch.float64)
    if float(cost.max() - cost.min()) / epsilon < 600:  # exp(-600) ~ 1e-261: K's entries stay normal floats
        return _sinkhorn_scaling(cost, epsilon, max_iter, tol)
    return _sinkhorn_log(cost, epsilon, max_iter, tol)


def _sinkhorn_scaling(cost: Tensor, epsilon: float, max_iter: int, tol: float) -> Tensor:
    n, m = cost.shape
    a, b = cost.new_full((n,), 1.0 / n), cost.new_full((m,), 1.0 / m)
    kernel = torch.exp(-(cost - cost.min()) / epsilon)  # the shift cancels in the normalised plan
    u, v = torch.ones_like(a), torch.ones_like(b)
    for it in range(max_iter):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
        if it % 10 == 9 and float((u * (kernel @ v) - a).abs().sum()) < tol:
            break
    return u[:, None] * kernel * v[None, :]


def _sinkhorn_log(cost: Tensor, epsilon: float, max_iter: int, tol: float) -> Tensor:
    n, m = cost.shape
    log_a = torch.full((n,), -np.log(n), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -np.log(m), dtype=cost.dtype, device=cost.device)
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for it in range(max_iter):
        f = epsilon * (log_a - torch.logsumexp((g[None, :] - cost) / epsilon, dim=1))
        g = epsilon * (log_b - torch.logsumexp((f[:, None] - cost) / epsilon, dim=0))
        if it % 10 == 9:  # checking costs a reduction; every 10th sweep is plenty
            log_plan = (f[:, None] + g[None, :] - cost) / epsilon
            if float((torch.logsumexp(log_plan, dim=1).exp() - log_a.exp()).abs().sum()) < tol:
                break
    return torch.exp((f[:, None] + g[None, :] - cost) / epsilon)


def independent_coupling(
    x0: Tensor, x1: Tensor, label: Tensor | None = None, generator: torch.Generator | None = None
) -> CoupledBatch:
    """The product coupling: independently drawn batches are paired as given (generator is unused)."""
    _check_batch(x0, x1, label)
    return CoupledBatch(x0=x0, x1=x1, label=label)


@functools.cache
def _network_simplex() -> Callable | None:
    try:  # imported on first use: POT's import costs seconds, and only OT runs need it
        from ot.lp import emd
    except ImportError:  # pragma: no cover - POT is a dependency; scipy still solves the problem
        return None
    return emd


def optimal_assignment(cost: np.ndarray) -> np.ndarray:
    """cols (B,) with sum_j cost[j, cols[j]] minimal over permutations; cost: (B, B) float64.

    POT's network simplex when it returns a permutation (it does for a square problem with uniform weights,
    unless its iteration cap stops it first), else scipy's linear_sum_assignment.
    """
    emd = _network_simplex()
    b = cost.shape[0]
    if emd is not None and b > 1:
        uniform = np.full(b, 1.0 / b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an early stop is caught below by the permutation check
            plan = emd(uniform, uniform, cost, numItermax=max(100_000, 50 * b * b))
        cols = plan.argmax(axis=1)
        if np.bincount(cols, minlength=b).max() == 1 and np.allclose(plan[np.arange(b), cols], 1.0 / b):
            return cols
    return linear_sum_assignment(cost)[1]


def ot_coupling(
    x0: Tensor,
    x1: Tensor,
    label: Tensor | None = None,
    generator: torch.Generator | None = None,
    block_size: int = 0,
) -> CoupledBatch:
    """Exact minibatch OT for squared Euclidean cost: x0 permuted so sum_j |x0_j - x1_j|^2 is minimal.

    Deterministic (generator is unused). Solves the B x B assignment problem on CPU
    (:func:`optimal_assignment`). ``block_size`` > 0 cuts the batch into consecutive blocks of that many rows
    (the last one takes the remainder) and solves each block's assignment on its own: exact minibatch OT at
    minibatch size ``block_size``, x0 re-paired only within its block. The rows of a batch are i.i.d., so the
    blocks are random sub-batches; the solver's time grows about like B^2, so k blocks cost about 1/k of one.
    """
    _check_batch(x0, x1, label)
    if block_size < 0:
        raise ValueError(f"block_size must be >= 0 (0 = the whole batch), got {block_size}")
    b = x0.shape[0]
    size = block_size if 0 < block_size < b else b
    cols = np.empty(b, dtype=np.int64)  # cols[j] = partner of x1_j
    start = 0
    while start < b:
        stop = b if b - start < 2 * size else start + size  # the last block takes the remainder
        cost = squared_distances(x1[start:stop], x0[start:stop]).numpy()  # rows: x1, columns: x0
        cols[start:stop] = start + optimal_assignment(cost)
        start = stop
    perm = torch.as_tensor(cols, dtype=torch.long, device=x0.device)
    return CoupledBatch(x0=x0[perm], x1=x1, label=label)


def sinkhorn_coupling(
    x0: Tensor,
    x1: Tensor,
    label: Tensor | None = None,
    epsilon: float = 0.05,
    generator: torch.Generator | None = None,
) -> CoupledBatch:
    """Entropic OT: solve the Sinkhorn plan on cost / mean(cost), then sample each x1's partner x0 from it.

    x0 rows are drawn with replacement from the plan's column for each x1 (see module docstring); epsilon is
    relative to the mean pairwise squared distance. ``generator`` (a CPU generator) drives the draws.
    """
    _check_batch(x0, x1, label)
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    cost = squared_distances(x1, x0)  # rows: x1, columns: x0
    cost = cost / cost.mean().clamp_min(1e-300)
    idx = sample_rows(sinkhorn_plan(cost, epsilon), generator)
    return CoupledBatch(x0=x0[idx.to(x0.device)], x1=x1, label=label)


def sample_rows(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One column index per row, row i's drawn with probability weights[i, j] / sum_j weights[i, j].

    weights: (N, M) >= 0 with positive row sums -> (N,) long. Inverse-CDF sampling (cumulative sums and a
    sorted search): a uniform r in [0, sum) picks the j with cdf[j-1] <= r < cdf[j], so a zero-weight column
    has no interval to be hit in. The same law as torch.multinomial(weights, 1), about 10x faster at 256 x 256 on a CPU.
    """
    cdf = weights.cumsum(1)
    r = torch.rand(weights.shape[0], 1, generator=generator, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, r, right=True).squeeze(1).clamp_max(weights.shape[1] - 1)


CouplingFn = Callable[..., CoupledBatch]


def within_classes(coupling: CouplingFn) -> CouplingFn:
    """`coupling` applied inside each class of the batch: rows of class k re-pair only with the x0 rows at
    their own positions.

    A conditional flow needs x0 | c ~ p0 for every condition c. Minibatch OT over a batch of several classes
    breaks that (class k's x1 would take the noise nearest to it, not a draw of p0), so the label-blind
    couplings are solved per class: the x0 rows at class k's positions are an i.i.d. draw of p0 independent of
    the labels, and re-pairing them among themselves keeps their law. Without labels this is `coupling` itself.
    Tensor conditions (continuous c) have no classes to split by: they are refused here.
    """

    def coupled(x0: Tensor, x1: Tensor, label: Tensor | None = None,
                generator: torch.Generator | None = None) -> CoupledBatch:
        if label is None:
            return coupling(x0, x1, None, generator=generator)
        if label.dim() != 1 or label.dtype.is_floating_point:
            raise ValueError("minibatch OT / Sinkhorn ignore a tensor condition, so noise would no longer be "
                             "p0 given the condition; use data.coupling=independent")
        _check_batch(x0, x1, label)
        out = x0.clone()
        for k in torch.unique(label):
            rows = (label == k).nonzero().squeeze(1)
            out[rows] = coupling(x0[rows], x1[rows], None, generator=generator).x0
        return CoupledBatch(x0=out, x1=x1, label=label)

    return coupled

COUPLINGS: dict[str, CouplingFn] = {
    "independent": independent_coupling,
    "ot": ot_coupling,
    "sinkhorn": sinkhorn_coupling,
}


def get_coupling(name: str, **kwargs: float) -> CouplingFn:
    """Coupling by name ("independent", "ot", "sinkhorn"); kwargs (e.g. epsilon) are bound to it.

    The result is called as fn(x0, x1, label=None, generator=None) -> CoupledBatch; OT and Sinkhorn solve
    within each class of a labelled batch (:func:`within_classes`).
    """
    if name not in COUPLINGS:
        raise ValueError(f"unknown coupling {name!r}; choose one of {sorted(COUPLINGS)}")
    fn = COUPLINGS[name]
    fn = functools.partial(fn, **kwargs) if kwargs else fn
    return fn if name == "independent" else within_classes(fn)
