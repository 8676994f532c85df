"""Time samplers: the drawn times follow their stated distributions."""

import math

import pytest
import torch
from scipy.stats import kstest

from straightflow.methods.time_sampling import LogitNormalTime, UniformTime, get_time_sampler

N = 20000


def test_uniform_passes_ks_test_and_lies_in_unit_interval():
    t = UniformTime().sample(N, torch.Generator().manual_seed(0))
    assert t.shape == (N,)
    assert bool((t >= 0).all()) and bool((t <= 1).all())
    assert kstest(t.double().numpy(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (0.5, 0.7), (-1.0, 1.5)])
def test_logit_of_logit_normal_has_stated_mean_and_std(mean, std):
    t = LogitNormalTime(mean, std).sample(N, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert bool((t > 0).all()) and bool((t < 1).all())
    z = torch.logit(t)
    se_mean = std / math.sqrt(N)
    se_std = std / math.sqrt(2 * (N - 1))  # standard error of the sample std for a normal
    assert abs(z.mean().item() - mean) < 3 * se_mean
    assert abs(z.std().item() - std) < 3 * se_std


def test_logit_normal_passes_ks_test_against_its_cdf():
    # P(t <= u) = Phi((logit u - mean) / std)
    sampler = LogitNormalTime(0.3, 0.8)
    t = sampler.sample(N, torch.Generator().manual_seed(2), dtype=torch.float64).numpy()

    def cdf(u):
        return 0.5 * (1 + torch.erf((torch.logit(torch.as_tensor(u)) - 0.3) / (0.8 * math.sqrt(2)))).numpy()

    assert kstest(t, cdf).pvalue > 1e-3


@pytest.mark.parametrize("sampler", [UniformTime(), LogitNormalTime()])
def test_generator_makes_draws_reproducible_and_dtype_device_are_honoured(sampler):
    a = sampler.sample(8, torch.Generator().manual_seed(3), device="cpu", dtype=torch.float64)
    b = sampler.sample(8, torch.Generator().manual_seed(3), device="cpu", dtype=torch.float64)
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.device.type == "cpu"
    assert sampler.sample(4, None).shape == (4,)


def test_get_time_sampler_by_name():
    assert get_time_sampler("uniform") == UniformTime()
    assert get_time_sampler("logit_normal", mean=0.2, std=2.0) == LogitNormalTime(0.2, 2.0)
    with pytest.raises(ValueError, match="'logit_normal', 'uniform'"):
        get_time_sampler("beta")


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_non_positive_std_raises(std):
    with pytest.raises(ValueError, match="std"):
        LogitNormalTime(std=std)


def test_negative_n_raises():
    with pytest.raises(ValueError, match="n must"):
        UniformTime().sample(-1)
