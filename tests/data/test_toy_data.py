"""Toy distributions: shapes, reproducibility, scales against closed-form moments, exact densities."""

import math

import pytest
import torch

from straightflow.data.toy import (
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    TOY_DATASETS,
    sample_toy,
    toy_dim,
    toy_entropy,
    toy_log_prob,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_every_set_gives_finite_float32_points_of_shape_n_by_its_dimension(name):
    x = sample_toy(name, 1000, _gen(0))
    assert x.shape == (1000, toy_dim(name)) and x.dtype == torch.float32
    assert toy_dim(name) == (16 if name == "moons16d" else 2)
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_same_generator_seed_reproduces_the_draw_and_another_seed_does_not(name):
    assert torch.equal(sample_toy(name, 300, _gen(7)), sample_toy(name, 300, _gen(7)))
    assert not torch.equal(sample_toy(name, 300, _gen(7)), sample_toy(name, 300, _gen(8)))


@pytest.mark.parametrize("name", [name for name in TOY_DATASETS if name not in ("8gaussians", "studentt")])
def test_every_set_but_the_radius_5_gaussians_and_the_heavy_tails_lies_roughly_in_the_box_minus_4_to_4(name):
    x = sample_toy(name, 20000, _gen(1))
    assert x.abs().quantile(0.999).item() < 4.5
    assert x.abs().max().item() > 0.9  # not collapsed to a tiny blob either


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "circles", "2spirals", "pinwheel", "moons"])
def test_sets_symmetric_about_the_origin_have_mean_zero(name):
    # moons: the upper moon has mean (0, 2/pi), the lower (1, 1/2 - 2/pi); the average (1/2, 1/4) is what
    # the affine map subtracts. The others are symmetric under a rotation about the origin.
    x = sample_toy(name, 40000, _gen(2)).double()
    standard_error = x.std(dim=0) / math.sqrt(x.shape[0])
    assert (x.mean(dim=0).abs() < 5 * standard_error).all()


def test_unknown_name_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown data set 'xyz'; choose from: 8gaussians, moons"):
        sample_toy("xyz", 10)


def test_negative_count_is_a_value_error():
    with pytest.raises(ValueError, match="-1"):
        sample_toy("moons", -1)


def test_eight_gaussians_second_moment_is_radius_squared_plus_two_variances():
    # E|x|^2 = |c|^2 + tr(s^2 I) = 25 + 2 * 0.25 for every component.
    x = sample_toy("8gaussians", 100000, _gen(3)).double()
    expected = EIGHT_GAUSSIANS_RADIUS**2 + 2 * EIGHT_GAUSSIANS_STD**2
    sq = x.pow(2).sum(dim=1)
    assert abs(sq.mean().item() - expected) < 5 * sq.std().item() / math.sqrt(len(sq))


def test_eight_gaussians_components_are_equally_likely_with_std_one_half():
    x = sample_toy("8gaussians", 80000, _gen(4)).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 5.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    nearest = torch.cdist(x, centres).argmin(dim=1)
    shares = torch.bincount(nearest, minlength=8).double() / len(x)
    assert (shares - 1 / 8).abs().max().item() < 0.01
    offsets = x - centres[nearest]
    assert offsets.std(dim=0).sub(0.5).abs().max().item() < 0.01


def test_checkerboard_samples_fall_only_on_the_dark_squares_each_with_share_one_eighth():
    x = sample_toy("checkerboard", 80000, _gen(5))
    assert ((x >= -4) & (x < 4)).all()
    square = torch.floor(x / 2).long() + 2  # column and row of the side-2 square, 0..3
    assert ((square.sum(dim=1) % 2) == 0).all()
    shares = torch.bincount(square[:, 0] * 4 + square[:, 1], minlength=16).double() / len(x)
    dark = shares[shares > 0]
    assert len(dark) == 8 and (dark - 1 / 8).abs().max().item() < 0.01


def test_checkerboard_log_prob_is_minus_log_32_on_dark_squares_and_minus_inf_on_light_ones():
    # floor(x / 2) sums: (1, 1) -> 0, (-1, -1) -> -2, (3, -1) -> 0 dark; (1, -1) -> -1, (-3, 3) -> -1 light.
    points = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [3.0, -1.0], [1.0, -1.0], [-3.0, 3.0], [5.0, 1.0]])
    expected = torch.tensor([-math.log(32)] * 3 + [-math.inf] * 3)
    assert torch.equal(toy_log_prob("checkerboard", points), expected)


def test_checkerboard_log_prob_is_finite_at_every_sample():
    assert torch.isfinite(toy_log_prob("checkerboard", sample_toy("checkerboard", 5000, _gen(6)))).all()


def test_eight_gaussians_log_prob_at_a_centre_is_one_eighth_of_a_gaussian_peak():
    # The other seven components add at most 2 exp(-3.83^2 * 2) relative: below 1e-12.
    value = toy_log_prob("8gaussians", torch.tensor([[0.0, 5.0]], dtype=torch.float64)).item()
    assert value == pytest.approx(-math.log(8) - math.log(2 * math.pi * 0.25), abs=1e-12)


def test_eight_gaussians_density_integrates_to_one():
    h = 0.05
    axis = torch.arange(-9, 9 + h / 2, h, dtype=torch.float64)
    mass = toy_log_prob("8gaussians", torch.cartesian_prod(axis, axis)).exp().sum().item() * h * h
    assert mass == pytest.approx(1.0, abs=1e-9)


def test_log_prob_rejects_sets_without_a_closed_form_and_wrong_shapes():
    with pytest.raises(ValueError, match="moons"):
        toy_log_prob("moons", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        toy_log_prob("8gaussians", torch.zeros(3, 3))


def test_checkerboard_entropy_is_log_of_its_area_32():
    assert toy_entropy("checkerboard") == math.log(32)


def test_eight_gaussians_entropy_sits_just_below_the_disjoint_mixture_value():
    # 8 components with disjoint supports would give log 8 + log(2 pi e s^2); overlap can only lower it.
    disjoint = math.log(8) + math.log(2 * math.pi * math.e * EIGHT_GAUSSIANS_STD**2)
    value = toy_entropy("8gaussians")
    assert disjoint - 1e-3 < value < disjoint


def test_eight_gaussians_entropy_matches_a_monte_carlo_estimate_of_minus_mean_log_density():
    log_p = toy_log_prob("8gaussians", sample_toy("8gaussians", 200000, _gen(9)).double())
    estimate, standard_error = -log_p.mean().item(), log_p.std().item() / math.sqrt(len(log_p))
    assert abs(estimate - toy_entropy("8gaussians")) < 4 * standard_error


def test_entropy_of_a_set_without_closed_form_is_a_value_error():
    with pytest.raises(ValueError, match="swissroll"):
        toy_entropy("swissroll")


# The harder sets of our own (lissajous, spiral, studentt, grid25, ringdot, moons16d): one property each.


def test_lissajous_points_lie_within_a_few_noise_stds_of_the_curve():
    x = sample_toy("lissajous", 2000, _gen(10)).double()
    u = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    curve = 3.0 * torch.stack([(3 * u + math.pi / 2).sin(), (2 * u).sin()], dim=1)
    dist = torch.cdist(x, curve).min(dim=1).values
    assert dist.median().item() < 0.03  # noise std 0.02: the median distance is about 0.67 std
    assert dist.max().item() < 0.12


def test_spiral_points_lie_near_one_thin_arm_of_radius_3_5():
    from straightflow.data.toy import _spiral_curve

    x = sample_toy("spiral", 2000, _gen(11)).double()
    curve = _spiral_curve(torch.linspace(0, 4 * math.pi, 40001, dtype=torch.float64))
    dist = torch.cdist(x, curve).min(dim=1).values
    assert dist.median().item() < 0.04 and dist.max().item() < 0.2
    assert 3.3 < x.norm(dim=1).max().item() < 3.7


def test_student_t_has_heavy_tails_and_the_right_scale():
    # 0.5 t_3 per coordinate (marginally a t with 3 dof): median |x_i| = 0.5 * 0.7649 and P(|x_i| > 0.5 * 5.841)
    # = 1%; a Gaussian with that median would almost never pass 0.5 * 5.841.
    x = sample_toy("studentt", 200000, _gen(12)).double()
    assert abs(x.abs().median().item() - 0.5 * 0.7649) < 0.01
    tail = (x.abs() > 0.5 * 5.841).double().mean().item()
    assert 0.008 < tail < 0.012


def test_grid25_has_25_equally_likely_clusters_of_std_0_05():
    x = sample_toy("grid25", 50000, _gen(13)).double()
    axis = 1.5 * (torch.arange(5, dtype=torch.float64) - 2)
    centres = torch.cartesian_prod(axis, axis)
    nearest = torch.cdist(x, centres).argmin(dim=1)
    shares = torch.bincount(nearest, minlength=25).double() / len(x)
    assert (shares - 1 / 25).abs().max().item() < 0.005
    assert (x - centres[nearest]).std(dim=0).sub(0.05).abs().max().item() < 0.002


def test_ringdot_is_a_thin_ring_with_70_percent_and_a_tight_dot_with_30_percent():
    r = sample_toy("ringdot", 40000, _gen(14)).double().norm(dim=1)
    ring = r > 1.5
    assert abs(ring.double().mean().item() - 0.7) < 0.01
    assert (r[ring] - 3.0).abs().max().item() < 0.2 and r[~ring].max().item() < 0.6


def test_moons16d_is_moons_turned_by_a_fixed_rotation_with_thin_noise_off_the_plane():
    from straightflow.data.toy import _moons16d_rotation

    rot = _moons16d_rotation().double()
    assert torch.allclose(rot @ rot.T, torch.eye(16, dtype=torch.float64), atol=1e-6)
    x = sample_toy("moons16d", 20000, _gen(15)).double() @ rot  # back to [moons, noise]
    assert x[:, 2:].std(dim=0).sub(0.05).abs().max().item() < 0.003
    moons = sample_toy("moons", 20000, _gen(16)).double()
    assert torch.allclose(x[:, :2].mean(dim=0), moons.mean(dim=0), atol=0.03)
    assert torch.allclose(x[:, :2].std(dim=0), moons.std(dim=0), atol=0.03)
