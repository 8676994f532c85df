"""Schedulers: closed-form values, derivatives, boundary values and validation."""

import math

import pytest
import torch
from scipy.integrate import quad

from straightflow.paths.schedule import (
    CondOTScheduler,
    CosineScheduler,
    LinearScheduler,
    VPScheduler,
    get_scheduler,
)

ALL = {
    "linear": LinearScheduler(),
    "condot": CondOTScheduler(sigma_min=1e-2),
    "vp": VPScheduler(),
    "cosine": CosineScheduler(),
}


def _grid(lo: float = 0.01, hi: float = 0.99, n: int = 41) -> torch.Tensor:
    return torch.linspace(lo, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("name", ALL)
def test_derivatives_equal_central_differences_of_alpha_and_sigma(name):
    sched, t, h = ALL[name], _grid(), 1e-6
    out, up, down = sched(t), sched(t + h), sched(t - h)
    torch.testing.assert_close(out.d_alpha, (up.alpha - down.alpha) / (2 * h), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.d_sigma, (up.sigma - down.sigma) / (2 * h), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_outputs_are_batch_shaped_like_t(name):
    t = torch.rand(7, dtype=torch.float64)
    out = ALL[name](t)
    for field in (out.alpha, out.sigma, out.d_alpha, out.d_sigma):
        assert field.shape == (7,)


def test_linear_is_the_straight_interpolation():
    t = _grid(0.0, 1.0)
    out = LinearScheduler()(t)
    torch.testing.assert_close(out.alpha, t)
    torch.testing.assert_close(out.sigma, 1 - t)
    torch.testing.assert_close(out.d_alpha, torch.ones_like(t))
    torch.testing.assert_close(out.d_sigma, -torch.ones_like(t))


def test_condot_matches_lipman_eq_20_22_sigma_min_at_t1():
    # mu_t = t x1, sigma_t = 1 - (1 - sigma_min) t: sigma_0 = 1 and sigma_1 = sigma_min.
    sched = CondOTScheduler(sigma_min=0.05)
    out = sched(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.alpha, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.sigma, torch.tensor([1.0, 1 - 0.95 * 0.5, 0.05], dtype=torch.float64))


def test_cosine_closed_form_and_unit_variance():
    t = _grid(0.0, 1.0)
    out = CosineScheduler()(t)
    torch.testing.assert_close(out.alpha, torch.sin(math.pi * t / 2))
    torch.testing.assert_close(out.alpha**2 + out.sigma**2, torch.ones_like(t))


def test_vp_alpha_is_exp_of_minus_half_integrated_beta_over_reversed_time():
    # alpha_t = exp(-1/2 int_0^{1-t} beta(s) ds) with beta(s) = beta_min + s (beta_max - beta_min),
    # integrated numerically here, independently of the closed form T(s) in the code.
    bmin, bmax = 0.1, 20.0
    sched = VPScheduler(bmin, bmax)
    ts = [0.0, 0.1, 0.37, 0.5, 0.8, 0.99, 1.0]
    out = sched(torch.tensor(ts, dtype=torch.float64))
    for i, t in enumerate(ts):
        integral, _ = quad(lambda s: bmin + s * (bmax - bmin), 0.0, 1.0 - t)
        assert out.alpha[i].item() == pytest.approx(math.exp(-0.5 * integral), rel=1e-10, abs=1e-14)
    # variance preserving: alpha^2 + sigma^2 = 1 (up to the 1e-12 precision of sqrt near sigma -> 0)
    torch.testing.assert_close(out.alpha**2 + out.sigma**2, torch.ones(len(ts), dtype=torch.float64))


def test_vp_endpoints_data_at_one_nearly_noise_at_zero():
    out = VPScheduler()(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert out.alpha[1].item() == 1.0 and out.sigma[1].item() == 0.0
    assert out.alpha[0].item() == pytest.approx(math.exp(-(0.1 + 20.0) / 4), rel=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_exact_endpoints(name):
    out = ALL[name](torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.alpha, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.sigma, torch.tensor([1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ALL)
def test_monotone_and_conversion_determinant_positive(name):
    # alpha non-decreasing, sigma non-increasing, and a' s - a s' > 0 so the affine conversions are defined.
    out = ALL[name](_grid(0.0, 0.999, 200))
    assert bool((out.d_alpha >= 0).all()) and bool((out.d_sigma <= 0).all())
    assert bool((out.d_alpha * out.sigma - out.alpha * out.d_sigma > 0).all())


def test_get_scheduler_builds_each_name_with_kwargs():
    assert isinstance(get_scheduler("linear"), LinearScheduler)
    assert get_scheduler("condot", sigma_min=0.1) == CondOTScheduler(0.1)
    assert get_scheduler("vp", beta_min=0.2) == VPScheduler(beta_min=0.2)
    assert isinstance(get_scheduler("cosine"), CosineScheduler)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="'linear', 'vp'"):
        get_scheduler("ddpm")


@pytest.mark.parametrize(
    "make", [lambda: CondOTScheduler(-0.1), lambda: CondOTScheduler(1.0), lambda: VPScheduler(5.0, 1.0)]
)
def test_bad_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_time_must_be_one_dimensional():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        LinearScheduler()(torch.zeros(3, 1))
