"""Rectified flow's pure pieces: straight flows score 0, crossings and costs are exact, the k-step grid."""

import pytest
import torch

from straightflow.data.source import GaussianSource
from straightflow.methods.flow_matching import FlowMatching
from straightflow.methods.rectified import coupling_report, independent_coupling
from straightflow.methods.time_sampling import GridTime
from straightflow.metrics.flows import straightness
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.paths.schedule import get_scheduler
from straightflow.solvers.integrate import odeint


def _rotation(x, t, label=None):
    """A curved flow: rotation at unit angular speed."""
    return torch.stack([-x[:, 1], x[:, 0]], dim=1)


# ----------------------------------------------------------------------------------------- metrics
def test_an_exactly_straight_flow_has_zero_straightness():
    # v(x, t) = (0, sin(3 x_a)): each point moves vertically at a speed fixed by its own x_a, so every path
    # is a line travelled at constant speed, with different speeds for different points.
    def v(x, t):
        return torch.stack([torch.zeros_like(x[:, 0]), torch.sin(3 * x[:, 0])], dim=1)

    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sol = odeint(v, x0, solver="rk4", steps=16, return_trajectory=True)
    velocities = torch.stack([v(x, torch.full((64,), 0.0, dtype=torch.float64)) for x in sol.trajectory])
    assert straightness(sol.trajectory, sol.times) == pytest.approx(0.0, abs=1e-20)
    assert straightness(sol.trajectory, sol.times, velocities) == pytest.approx(0.0, abs=1e-20)
    curved = odeint(_rotation, x0, solver="rk4", steps=16, return_trajectory=True)
    assert straightness(curved.trajectory, curved.times) > 0.1


def test_crossing_rate_and_cost_of_a_known_configuration_are_exact():
    # A, B form an X crossing at (1, 1); E runs horizontally through (1, 1): A-B, A-E, B-E cross properly.
    # C and D are parallel vertical segments far away and cross nothing: 3 of the 10 pairs cross.
    x0 = torch.tensor([[0.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [5.0, 0.0], [6.0, 0.0]])
    x1 = torch.tensor([[2.0, 2.0], [2.0, 0.0], [3.0, 1.0], [5.0, 1.0], [6.0, 1.0]])
    report = coupling_report(x0, x1)
    assert report.crossing_rate == 3 / 10
    assert report.transport_cost == pytest.approx((8 + 8 + 16 + 1 + 1) / 5)
    assert report.crossing_points == 5
    no_cross = coupling_report(x0, x0 + torch.tensor([1.0, 0.5]))  # a translation: parallel segments
    assert no_cross.crossing_rate == 0.0
    assert coupling_report(torch.zeros(4, 3), torch.ones(4, 3)).crossing_rate is None  # not 2-D


def test_independent_coupling_crosses_often_and_costs_the_sum_of_second_moments():
    from straightflow.data.source import resolve_data

    data = resolve_data("8gaussians")
    x0, x1 = independent_coupling(data, GaussianSource(2), 3000, seed=0)
    report = coupling_report(x0, x1)
    assert 0.1 < report.crossing_rate < 0.5
    assert report.transport_cost == pytest.approx(2 + 25 + 2 * 0.25, rel=0.05)  # E|x0|^2 + E|x1|^2


# ----------------------------------------------------------------------------------------- distillation
def test_grid_time_sampler_draws_the_k_step_euler_grid():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(GridTime(1).sample(100, g), torch.zeros(100))
    t = GridTime(4).sample(4000, g)
    assert set(t.tolist()) == {0.0, 0.25, 0.5, 0.75}
    with pytest.raises(ValueError, match="steps >= 1"):
        GridTime(0)


def test_one_step_distillation_loss_is_the_papers_l2_objective():
    torch.manual_seed(0)
    model = MLP(2, 16, 1, 1, "s,t-s", 4, 0)
    x0, x1 = torch.randn(32, 2), torch.randn(32, 2) * 3
    method = FlowMatching(AffinePath(get_scheduler("linear")), GridTime(1))
    loss = method.loss(model, CoupledBatch(x0, x1, None), torch.Generator().manual_seed(1)).loss
    direct = (x1 - x0 - model(x0, torch.zeros(32))).square().mean(1)  # |x1 - x0 - v(x0, 0)|^2 / D
    torch.testing.assert_close(loss, direct)
