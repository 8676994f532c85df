"""Divergence estimators: exact trace against closed forms, Hutchinson's unbiasedness, probes, Jacobians."""

import math

import pytest
import torch

from straightflow.models.mlp import MLP
from straightflow.paths.gaussian import GaussianMixture
from straightflow.solvers.divergence import (
    EXACT_MAX_DIM,
    choose_estimator,
    exact_divergence,
    hutchinson_divergence,
    jacobian,
    make_probes,
    resolve_estimator,
)

F64 = torch.float64


def _mixture(dim: int = 2) -> GaussianMixture:
    g = torch.Generator().manual_seed(3)
    return GaussianMixture(
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=F64),
        means=2.0 * torch.randn(3, dim, generator=g, dtype=F64),
        stds=torch.tensor([0.3, 0.5, 0.8], dtype=F64),
    )


def _linear_field(dim: int):
    """v(x, t) = t A x + sin(x) elementwise-free part: div = t tr(A) + sum cos(x_i)."""
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1), dtype=F64)

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return (t[:, None] * flat @ a.T + flat.sin()).reshape(x.shape)

    def div(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return t * torch.trace(a) + x.reshape(x.shape[0], -1).cos().sum(1)

    return v, div


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 2, 3)])
@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_exact_divergence_matches_closed_form_for_vectors_and_images(shape, chunk):
    dim = math.prod(shape[1:])
    v, div = _linear_field(dim)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.rand(shape[0], generator=torch.Generator().manual_seed(1), dtype=F64)
    out, d = exact_divergence(v, x, t, chunk_size=chunk)
    torch.testing.assert_close(out, v(x, t))
    torch.testing.assert_close(d, div(x, t))
    assert d.shape == (shape[0],)


def test_exact_divergence_works_under_no_grad_and_returns_detached_outputs():
    model = MLP(3, width=16, depth=1)
    x, t = torch.randn(4, 3), torch.rand(4)
    with torch.no_grad():
        out, d = exact_divergence(lambda y, s: model(y, s), x, t, chunk_size=1)
    assert not out.requires_grad and not d.requires_grad
    jac = torch.func.vmap(torch.func.jacrev(lambda a, b: model(a[None], b[None])[0]))(x, t)
    torch.testing.assert_close(d, jac.diagonal(dim1=1, dim2=2).sum(1), rtol=1e-5, atol=1e-6)


def test_exact_divergence_with_create_graph_gives_parameter_gradients():
    model = MLP(2, width=16, depth=1)
    x, t = torch.randn(4, 2), torch.rand(4)
    _, d = exact_divergence(lambda y, s: model(y, s), x, t, create_graph=True)
    d.sum().backward()
    assert model.hidden[0].weight.grad is not None and model.hidden[0].weight.grad.abs().sum() > 0


def test_divergence_of_a_field_that_ignores_x_is_zero():
    x, t = torch.randn(3, 2), torch.rand(3)
    const = lambda y, s: s[:, None].expand(-1, 2) * 1.0  # noqa: E731
    assert torch.equal(exact_divergence(const, x, t)[1], torch.zeros(3))
    probes = make_probes("gaussian", 2, x.shape, torch.Generator().manual_seed(0))
    assert torch.equal(hutchinson_divergence(const, x, t, probes)[1], torch.zeros(3))


def _dense_field(dim: int):
    """v(x, t) = tanh(x A + t) B: a nonlinear field with a dense, non-symmetric Jacobian."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(dim, 8, generator=g, dtype=F64), torch.randn(8, dim, generator=g, dtype=F64)
    return lambda x, t: torch.tanh(x @ a + t[:, None]) @ b


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_three_standard_errors(kind):
    v = _dense_field(4)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(5), dtype=F64) * 0.5
    t = torch.full((6,), 0.7, dtype=F64)
    _, exact = exact_divergence(v, x, t)
    k = 4000
    probes = make_probes(kind, k, x.shape, torch.Generator().manual_seed(11), dtype=F64)
    _, est = hutchinson_divergence(v, x, t, probes, per_probe=True)  # (K, B)
    mean, stderr = est.mean(0), est.std(0) / math.sqrt(k)
    assert bool((stderr > 1e-3).all())  # a real test: the estimator is noisy here
    assert bool(((mean - exact).abs() < 3 * stderr).all()), ((mean - exact) / stderr).tolist()
    _, averaged = hutchinson_divergence(v, x, t, probes)
    torch.testing.assert_close(averaged, mean)


def test_rademacher_variance_is_below_gaussian_variance():
    # Var of u^T J u: 2 ||J_sym||_F^2 - 2 sum J_ii^2 (Rademacher) vs 2 ||J_sym||_F^2 (Gaussian).
    v = _dense_field(3)
    x, t = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=F64), torch.full((4,), 0.5, dtype=F64)
    variances = {}
    for kind in ("rademacher", "gaussian"):
        probes = make_probes(kind, 3000, x.shape, torch.Generator().manual_seed(0), dtype=F64)
        variances[kind] = hutchinson_divergence(v, x, t, probes, per_probe=True)[1].var(0)
    assert bool((variances["rademacher"] < variances["gaussian"]).all())


def test_make_probes_is_seeded_and_has_identity_second_moment():
    a = make_probes("rademacher", 3, (5, 2), torch.Generator().manual_seed(7))
    b = make_probes("rademacher", 3, (5, 2), torch.Generator().manual_seed(7))
    assert a.shape == (3, 5, 2) and torch.equal(a, b)
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    g = make_probes("gaussian", 20000, (1, 3), torch.Generator().manual_seed(0), dtype=F64)[:, 0]
    torch.testing.assert_close(g.T @ g / g.shape[0], torch.eye(3, dtype=F64), rtol=0, atol=0.05)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "uniform", "k": 1}, "unknown probe kind 'uniform'"),
    ({"kind": "gaussian", "k": 0}, "number of probes must be an int >= 1, got 0"),
])
def test_make_probes_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_probes(x_shape=(2, 2), **kwargs)


def test_probes_of_wrong_shape_are_rejected():
    x, t = torch.randn(3, 2), torch.rand(3)
    with pytest.raises(ValueError, match="probes must have shape"):
        hutchinson_divergence(lambda y, s: y, x, t, torch.ones(2, 4, 2))


def test_estimator_choice_by_dimension_and_errors():
    assert choose_estimator(2) == "exact" and choose_estimator(EXACT_MAX_DIM) == "exact"
    assert choose_estimator(EXACT_MAX_DIM + 1) == "hutchinson" and choose_estimator(3072) == "hutchinson"
    assert resolve_estimator("auto", 784) == "hutchinson" and resolve_estimator("exact", 784) == "exact"
    with pytest.raises(ValueError, match="unknown divergence estimator 'trace'; choose from: auto, exact, hutchinson"):
        resolve_estimator("trace", 2)


def test_jacobian_matches_torch_func():
    model = MLP(3, width=16, depth=1)
    x, t = torch.randn(4, 3), torch.rand(4)
    out, jac = jacobian(lambda y: model(y, t), x)
    ref = torch.func.vmap(torch.func.jacrev(lambda a, b: model(a[None], b[None])[0]))(x, t)
    torch.testing.assert_close(out, model(x, t))
    torch.testing.assert_close(jac, ref, rtol=1e-5, atol=1e-6)
