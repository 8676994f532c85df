"""Transport cost, straightness and crossing rate against hand-computed values."""

import itertools
import math

import pytest
import torch

from straightflow.metrics.flows import crossing_rate, straightness, transport_cost


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_transport_cost_of_a_shift_is_the_squared_shift_summed_over_all_dims():
    x0 = torch.randn(10, 2, 3, generator=_gen(0), dtype=torch.float64)
    assert transport_cost(x0, x0 + 0.5) == pytest.approx(6 * 0.25, rel=1e-12)


def test_transport_cost_is_the_mean_over_pairs():
    x0 = torch.zeros(2, 2)
    x1 = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert transport_cost(x0, x1) == pytest.approx((25 + 1) / 2)


def test_transport_cost_rejects_unpaired_batches():
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(4, 2\)"):
        transport_cost(torch.zeros(3, 2), torch.zeros(4, 2))


def test_a_straight_constant_speed_flow_has_zero_straightness_with_and_without_velocities():
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    x0 = torch.randn(5, 2, generator=_gen(1), dtype=torch.float64)
    x1 = torch.randn(5, 2, generator=_gen(2), dtype=torch.float64)
    trajectory = x0 + t[:, None, None] * (x1 - x0)
    velocities = (x1 - x0).expand_as(trajectory)
    assert straightness(trajectory, t) == pytest.approx(0.0, abs=1e-24)
    assert straightness(trajectory, t, velocities) == pytest.approx(0.0, abs=1e-24)


def test_a_quarter_circle_has_straightness_pi_squared_over_4_minus_2():
    # x_t = (cos(pi t/2), sin(pi t/2)): int |v|^2 = pi^2/4, |x1 - x0|^2 = 2, S = int |v|^2 - |x1 - x0|^2.
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    angle = math.pi / 2 * t
    trajectory = torch.stack([angle.cos(), angle.sin()], dim=1)[:, None, :]
    velocities = math.pi / 2 * torch.stack([-angle.sin(), angle.cos()], dim=1)[:, None, :]
    exact = math.pi**2 / 4 - 2
    assert straightness(trajectory, t, velocities) == pytest.approx(exact, abs=1e-6)
    assert straightness(trajectory, t) == pytest.approx(exact, abs=1e-6)


def test_a_line_travelled_at_varying_speed_is_not_straight():
    # x_t = t^2 x1 from 0: v = 2 t x1, so S = |x1|^2 int (1 - 2t)^2 dt = |x1|^2 / 3.
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    x1 = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    trajectory = t[:, None, None] ** 2 * x1
    velocities = 2 * t[:, None, None] * x1
    assert straightness(trajectory, t, velocities) == pytest.approx(25 / 3, rel=1e-5)
    assert straightness(trajectory, t) == pytest.approx(25 / 3, rel=1e-5)


def test_finite_differences_are_exact_on_a_piecewise_linear_path():
    # (0,0) -> (1,0) -> (1,1) at t = 0, 1/2, 1: chords (2,0), (0,2), mean velocity (1,1), S = (2 + 2) / 2.
    trajectory = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert straightness(trajectory, torch.tensor([0.0, 0.5, 1.0])) == pytest.approx(2.0)


def test_straightness_of_a_path_run_backward_in_time_equals_the_forward_value():
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    angle = math.pi / 2 * t
    trajectory = torch.stack([angle.cos(), angle.sin()], dim=1)[:, None, :]
    forward = straightness(trajectory, t)
    assert straightness(trajectory.flip(0), t.flip(0)) == pytest.approx(forward, rel=1e-12)


def test_straightness_rejects_mismatched_times_and_velocities_and_unordered_times():
    trajectory = torch.zeros(3, 4, 2)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        straightness(trajectory, torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="velocities"):
        straightness(trajectory, torch.linspace(0, 1, 3), torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match="monotone"):
        straightness(trajectory, torch.tensor([0.0, 0.7, 0.5]))


def _permutation_coupling(perm: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments from (i, 0) to (perm[i], 1): segments i < j cross iff perm[i] > perm[j]."""
    n = len(perm)
    x0 = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)
    x1 = torch.stack([torch.tensor(perm, dtype=torch.float32), torch.ones(n)], dim=1)
    return x0, x1


def test_an_x_crosses_and_parallel_segments_do_not():
    x0 = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert crossing_rate(x0, torch.tensor([[1.0, 1.0], [1.0, 0.0]])) == 1.0
    assert crossing_rate(x0, torch.tensor([[1.0, 0.0], [1.0, 1.0]])) == 0.0


def test_touching_at_an_end_and_collinear_overlap_are_not_proper_crossings():
    t_shape = crossing_rate(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    collinear = crossing_rate(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[2.0, 0.0], [3.0, 0.0]]))
    assert t_shape == 0.0 and collinear == 0.0


def test_reversed_fan_crosses_in_every_pair_and_identity_fan_in_none():
    n = 41  # odd: every segment passes through ((n - 1) / 2, 1 / 2), still a proper crossing
    assert crossing_rate(*_permutation_coupling(list(range(n))[::-1])) == 1.0
    assert crossing_rate(*_permutation_coupling(list(range(n)))) == 0.0


def test_crossing_rate_of_a_permutation_fan_is_its_share_of_inversions():
    perm = torch.randperm(60, generator=_gen(3)).tolist()
    inversions = sum(perm[i] > perm[j] for i, j in itertools.combinations(range(60), 2))
    assert crossing_rate(*_permutation_coupling(perm), chunk=7) == inversions / (60 * 59 / 2)


def test_sampled_pairs_agree_with_all_pairs():
    perm = torch.randperm(300, generator=_gen(4)).tolist()
    x0, x1 = _permutation_coupling(perm)
    exact = crossing_rate(x0, x1)
    sampled = crossing_rate(x0, x1, max_pairs=20000, generator=_gen(5))
    assert abs(sampled - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000)
    reversed_fan = _permutation_coupling(list(range(300))[::-1])
    assert crossing_rate(*reversed_fan, max_pairs=500, generator=_gen(6)) == 1.0


def test_crossing_rate_handles_two_thousand_segments_exactly():
    x0 = torch.randn(2000, 2, generator=_gen(7))
    rate = crossing_rate(x0, x0 + 0.1)
    assert rate == 0.0  # parallel translates never cross


def test_crossing_rate_rejects_non_planar_data_and_single_segments():
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        crossing_rate(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        crossing_rate(torch.zeros(1, 2), torch.ones(1, 2))
