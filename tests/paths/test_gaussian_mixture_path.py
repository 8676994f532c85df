"""GaussianMixture oracle: its marginal velocity transports its marginal density (continuity equation)."""

import math

import pytest
import torch
from scipy.stats import multivariate_normal

from straightflow.paths.gaussian import GaussianMixture
from straightflow.solvers.integrate import odeint

F64 = torch.float64


def _mixture() -> GaussianMixture:
    return GaussianMixture(
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=F64),
        means=torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.5, -2.0]], dtype=F64),
        stds=torch.tensor([0.3, 0.5, 0.8], dtype=F64),
    )


def _divergence(f, x: torch.Tensor) -> torch.Tensor:
    """sum_i d f_i / d x_i by autograd, x (B, D) -> (B,)."""
    x = x.detach().requires_grad_(True)
    out = f(x)
    div = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        (g,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)
        div = div + g[:, i]
    return div


@pytest.mark.parametrize("t_value", [0.1, 0.5, 0.9])
def test_marginal_velocity_satisfies_continuity_equation(t_value):
    # d_t p_t(x) + div(p_t v_t)(x) = 0 at random points: d_t by central difference, div by autograd.
    gm = _mixture()
    g = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(64, 2, generator=g, dtype=F64)
    t = torch.full((64,), t_value, dtype=F64)
    h = 1e-5
    dp_dt = (gm.marginal_log_prob(x, t + h).exp() - gm.marginal_log_prob(x, t - h).exp()) / (2 * h)
    flux = lambda y: gm.marginal_log_prob(y, t).exp()[:, None] * gm.marginal_velocity(y, t)  # noqa: E731
    div_flux = _divergence(flux, x)
    scale = dp_dt.abs().max()
    torch.testing.assert_close(dp_dt + div_flux, torch.zeros_like(dp_dt), rtol=0, atol=1e-6 * float(scale))


def test_marginal_at_t0_is_standard_normal_and_at_t1_the_mixture():
    gm = _mixture()
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    std_normal = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    torch.testing.assert_close(gm.marginal_log_prob(x, torch.zeros(10, dtype=F64)), std_normal)
    dens = sum(
        w * multivariate_normal(mean=m, cov=s**2 * torch.eye(2).numpy()).pdf(x.numpy())
        for w, m, s in zip([0.2, 0.5, 0.3], gm.means.numpy(), [0.3, 0.5, 0.8], strict=True)
    )
    torch.testing.assert_close(gm.log_prob(x), torch.as_tensor(dens).log())


def test_single_gaussian_flow_is_the_affine_map():
    # K = 1: the marginal ODE flow from x0 is x_t = t m + sqrt(var_t) x0, var_t = (1 - t)^2 + t^2 s^2,
    # so x_1 = m + s x0.
    m, s = torch.tensor([[1.5, -0.5, 2.0]], dtype=F64), 0.4
    gm = GaussianMixture(torch.ones(1, dtype=F64), m, torch.tensor([s], dtype=F64))
    x0 = torch.randn(32, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    sol = odeint(gm.marginal_velocity, x0, solver="rk4", steps=64, return_trajectory=True)
    t = sol.times[:, None, None]
    closed = t * m + torch.sqrt((1 - t) ** 2 + t**2 * s**2) * x0
    torch.testing.assert_close(sol.trajectory, closed, rtol=0, atol=1e-7)
    torch.testing.assert_close(sol.x, m + s * x0, rtol=0, atol=1e-7)


def test_velocity_is_straight_line_to_a_point_mass_target():
    # As s -> 0 the single-component velocity at x_t = t m + (1 - t) x0 is m - x0 (straight line to m).
    m = torch.tensor([[1.0, 2.0]], dtype=F64)
    gm = GaussianMixture(torch.ones(1, dtype=F64), m, torch.tensor([1e-8], dtype=F64))
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.full((8,), 0.3, dtype=F64)
    v = gm.marginal_velocity(0.3 * m + 0.7 * x0, t)
    torch.testing.assert_close(v, m - x0)


def test_samples_have_mixture_mean_and_second_moment():
    gm = _mixture()
    n = 20000
    x = gm.sample(n, torch.Generator().manual_seed(4))
    assert x.shape == (n, 2) and x.dtype == F64
    w, means, stds = gm.weights, gm.means, gm.stds
    mean = (w[:, None] * means).sum(0)
    second = (w[:, None] * (means**2 + stds[:, None] ** 2)).sum(0)
    var = second - mean**2
    se = torch.sqrt(var / n)
    assert bool(((x.mean(0) - mean).abs() < 4 * se).all())
    torch.testing.assert_close(x.var(0), var, rtol=0.05, atol=0)


def test_sample_is_reproducible_with_generator():
    gm = _mixture()
    a = gm.sample(5, torch.Generator().manual_seed(7))
    b = gm.sample(5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kw",
    [
        dict(weights=torch.tensor([1.0, -0.5]), means=torch.zeros(2, 2), stds=torch.ones(2)),
        dict(weights=torch.ones(2), means=torch.zeros(2, 2), stds=torch.tensor([1.0, 0.0])),
        dict(weights=torch.ones(3), means=torch.zeros(2, 2), stds=torch.ones(2)),
        dict(weights=torch.ones(2), means=torch.zeros(2), stds=torch.ones(2)),
    ],
)
def test_bad_parameters_raise(kw):
    with pytest.raises(ValueError):
        GaussianMixture(**kw)
