"""Wasserstein-2 and MMD against closed forms."""

import itertools
import math

import pytest
import torch

from straightflow.metrics.distances import median_distance, mmd_rbf, w2_noise_floor, wasserstein2


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_w2_of_a_cloud_against_itself_is_zero():
    x = torch.randn(200, 3, generator=_gen(0))
    assert wasserstein2(x, x) == pytest.approx(0.0, abs=1e-7)


def test_w2_between_a_cloud_and_its_translate_is_the_length_of_the_shift():
    # For any matching sigma, sum |x_i - x_sigma(i) - c|^2 = sum |x_i - x_sigma(i)|^2 + n |c|^2 (the
    # cross term sums to 0), so the identity matching is optimal and W2 = |c|.
    x = torch.randn(300, 3, generator=_gen(1), dtype=torch.float64)
    c = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    assert wasserstein2(x, x + c) == pytest.approx(c.norm().item(), rel=1e-9)


def test_w2_in_one_dimension_is_the_sorted_matching():
    x = torch.randn(250, 1, generator=_gen(2), dtype=torch.float64) * 2
    y = torch.rand(250, 1, generator=_gen(3), dtype=torch.float64) + 1
    expected = (x.sort(dim=0).values - y.sort(dim=0).values).pow(2).mean().sqrt().item()
    assert wasserstein2(x, y) == pytest.approx(expected, rel=1e-9)


def test_w2_to_a_single_point_is_the_root_mean_squared_distance_to_it():
    x = torch.randn(100, 2, generator=_gen(4), dtype=torch.float64)
    a = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    assert wasserstein2(x, a) == pytest.approx((x - a).pow(2).sum(dim=1).mean().sqrt().item(), rel=1e-9)


def test_w2_with_unequal_sizes_splits_mass():
    # {0, 2} (weights 1/2) against {1} (weight 1): every unit of mass moves distance 1.
    assert wasserstein2(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0]])) == pytest.approx(1.0)


def test_w2_is_symmetric_and_flattens_image_shaped_points():
    x = torch.randn(20, 2, 2, 2, generator=_gen(5))
    y = torch.randn(30, 2, 2, 2, generator=_gen(6))
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(y, x), rel=1e-9)
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(x.reshape(20, 8), y.reshape(30, 8)), rel=1e-12)


def test_w2_rejects_mismatched_dimensions_and_empty_clouds():
    with pytest.raises(ValueError, match=r"\(4, 2\) and \(4, 3\)"):
        wasserstein2(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="empty"):
        wasserstein2(torch.zeros(0, 2), torch.zeros(4, 2))


def test_noise_floor_is_zero_for_a_point_mass_and_positive_for_a_spread_distribution():
    assert w2_noise_floor(lambda n, g: torch.zeros(n, 2), 50) == 0.0

    def gaussian(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 2, generator=g)

    floor = w2_noise_floor(gaussian, 100, seed=3)
    assert floor > 0
    assert floor == wasserstein2(gaussian(100, _gen(3)), gaussian(100, _gen(4)))


def test_median_distance_of_three_points_on_a_line():
    # pairwise distances 1, 3, 2
    assert median_distance(torch.tensor([[0.0], [1.0], [3.0]])) == 2.0


def test_biased_mmd_of_a_cloud_against_itself_is_exactly_zero():
    x = torch.randn(100, 2, generator=_gen(7))
    assert mmd_rbf(x, x) == 0.0


def test_mmd_between_two_points_is_twice_one_minus_the_kernel_summed_over_bandwidths():
    # MMD^2 = k(a, a) + k(b, b) - 2 k(a, b) = sum_s 2 (1 - exp(-d^2 / (2 s^2))) with unit scale.
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    bandwidths = (1.0, 5.0, 10.0)
    expected = sum(2 * (1 - math.exp(-25 / (2 * s**2))) for s in bandwidths)
    assert mmd_rbf(a, b, bandwidths=bandwidths, scale=1.0) == pytest.approx(expected, rel=1e-12)


def test_mmd_is_the_v_statistic_with_the_diagonal_terms_included():
    # x = {0, 1}, y = {3}, one bandwidth 1: k(d) = exp(-d^2 / 2).
    # mean k(x, x') = (2 + 2 exp(-1/2)) / 4, mean k(y, y') = 1, mean k(x, y) = (exp(-9/2) + exp(-2)) / 2.
    expected = (2 + 2 * math.exp(-0.5)) / 4 + 1 - (math.exp(-4.5) + math.exp(-2))
    value = mmd_rbf(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]]), bandwidths=(1.0,), scale=1.0)
    assert value == pytest.approx(expected, rel=1e-12)


def test_mmd_grows_with_a_mean_shift_and_ignores_a_common_translation():
    x = torch.randn(300, 2, generator=_gen(8))
    y = torch.randn(300, 2, generator=_gen(9))
    values = [mmd_rbf(x, y + torch.tensor([shift, 0.0])) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(values))
    c = torch.tensor([10.0, -3.0])
    assert mmd_rbf(x + c, y + c) == pytest.approx(mmd_rbf(x, y), rel=1e-6)


def test_mmd_rejects_bad_bandwidths_and_a_zero_scale():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd_rbf(x, x + 1, bandwidths=(1.0, -1.0))
    with pytest.raises(ValueError, match="scale"):
        mmd_rbf(x, x)
