"""Mode guidance g = grad(-div v): its value, Hutchinson's unbiasedness, and that it raises the density."""

import pytest
import torch

from straightflow.methods.mode_guidance import mode_guidance_field, mode_guidance_vector, mode_guided_jumps
from straightflow.paths.gaussian import GaussianMixture
from straightflow.solvers.divergence import exact_divergence
from straightflow.solvers.integrate import odeint

F64 = torch.float64


def _mixture() -> GaussianMixture:
    return GaussianMixture(
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=F64),
        means=torch.tensor([[3.0, 0.0], [-2.0, 2.0], [0.5, -3.0]], dtype=F64),
        stds=torch.tensor([0.3, 0.5, 0.4], dtype=F64),
    )


def test_exact_guidance_vector_is_minus_the_gradient_of_the_divergence():
    gm = _mixture()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.full((8,), 0.6, dtype=F64)
    out, g = mode_guidance_vector(gm.marginal_velocity, x, t, estimator="exact")
    torch.testing.assert_close(out, gm.marginal_velocity(x, t))
    h = 1e-5
    for i in range(2):  # central differences of the exact divergence
        e = torch.zeros(2, dtype=F64)
        e[i] = h
        fd = (exact_divergence(gm.marginal_velocity, x + e, t)[1] - exact_divergence(gm.marginal_velocity, x - e, t)[1])
        torch.testing.assert_close(g[:, i], -fd / (2 * h), rtol=1e-5, atol=1e-6)


def test_hutchinson_guidance_is_unbiased():
    gm = _mixture()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.full((4,), 0.5, dtype=F64)
    _, exact = mode_guidance_vector(gm.marginal_velocity, x, t, estimator="exact")
    k = 2000
    _, est = mode_guidance_vector(gm.marginal_velocity, x.repeat(k, 1), t.repeat(k), probes_k=1,
                                  probe_kind="gaussian", generator=torch.Generator().manual_seed(2))
    est = est.view(k, 4, 2)
    stderr = est.std(0) / k**0.5
    assert bool(((est.mean(0) - exact).abs() <= 3 * stderr + 1e-9).all())


def test_zero_weight_returns_the_field_itself_and_bad_input_is_rejected():
    v = lambda x, t: x  # noqa: E731
    assert mode_guidance_field(v, 0.0) is v
    with pytest.raises(ValueError, match="number of probes must be an int >= 1, got 0"):
        mode_guidance_field(v, 1.0, probes_k=0)
    with pytest.raises(ValueError, match="unknown mode guidance estimator 'svd'"):
        mode_guidance_field(v, 1.0, estimator="svd")


@pytest.mark.parametrize("estimator", ["hutchinson", "exact"])
def test_mode_guidance_raises_mean_log_density_of_samples(estimator):
    gm = _mixture()
    x0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    mean_log_p = {}
    for lam in (0.0, 0.5):
        field = mode_guidance_field(gm.marginal_velocity, lam, probes_k=2, generator=torch.Generator().manual_seed(4),
                                    estimator=estimator)
        with torch.no_grad():
            x1 = odeint(field, x0, solver="euler", steps=32).x
        mean_log_p[lam] = float(gm.log_prob(x1).mean())
    assert mean_log_p[0.5] > mean_log_p[0.0] + 0.1, mean_log_p


def test_guided_jumps_add_lambda_h_g():
    gm = _mixture()

    def u(x, s, t):  # a stand-in average velocity whose instantaneous field u(x, s, s) is the mixture's v
        return gm.marginal_velocity(x, s) + 0.0 * t[:, None]

    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    s, t = torch.full((5,), 0.3, dtype=F64), torch.full((5,), 0.8, dtype=F64)
    guided = mode_guided_jumps(u, 2.0, estimator="exact")
    _, g = mode_guidance_vector(gm.marginal_velocity, x, s, estimator="exact")
    torch.testing.assert_close(guided(x, s, t), u(x, s, t) + 2.0 * g)
