"""FlowModel puts networks written in other conventions into ours; checked on fields known in closed form."""

import pytest
import torch
from torch import nn

from straightflow.models.adapters import FlowModel, as_flow_model, speaks_convention
from straightflow.models.mlp import MLP

A = torch.tensor([0.7, -1.2])  # the single data point: straight paths x_t = (1 - t) x0 + t A


def exact_u(x, s, t):
    """Our average velocity for data = {A}: every path is straight with velocity (A - x) / (1 - s)."""
    return (A - x) / (1 - s)[:, None]


class PaperNet(nn.Module):
    """The MeanFlow paper's convention: z_t = (1 - t) A + t eps (t = 1 noise), net(z, t, r) the average
    velocity from t to r with z_r = z_t - (t - r) u; for one data point u = (z - A) / t."""

    def forward(self, z, t, r):
        return (z - A) / t[:, None]


def test_paper_meanflow_convention_maps_to_our_average_velocity():
    x = torch.randn(5, 2)
    s, t = torch.rand(5) * 0.5, 0.5 + torch.rand(5) * 0.4
    ours = FlowModel(PaperNet(), n_times=2, direction="data_to_noise")
    torch.testing.assert_close(ours(x, s, t), exact_u(x, s, t))
    # the paper's notation order u(z, r, t) (end first)
    swapped = FlowModel(lambda_net(lambda z, r, t: (z - A) / t[:, None]), n_times=2, direction="data_to_noise",
                        argument_order="end,start")
    torch.testing.assert_close(swapped(x, s, t), exact_u(x, s, t))
    # and the jump lands where the straight path is: x_t = x_s + (t - s) u
    x_t = x + (t - s)[:, None] * ours(x, s, t)
    torch.testing.assert_close((A - x_t) / (1 - t)[:, None], (A - x) / (1 - s)[:, None])


def lambda_net(fn):
    class Net(nn.Module):
        def forward(self, *args, **kwargs):
            return fn(*args, **kwargs)

    return Net()


def test_time_as_column_and_reversed_velocity():
    x, t = torch.randn(4, 2), torch.rand(4) * 0.9
    seen = {}

    def v_flipped(x_, tau):  # SD3-style: tau = 1 is noise; v points from data to noise
        seen["shape"] = tuple(tau.shape)
        return -(A - x_) / tau

    model = FlowModel(lambda_net(v_flipped), time_shape="(B, 1)", direction="data_to_noise")
    torch.testing.assert_close(model(x, t), (A - x) / (1 - t)[:, None])
    assert seen["shape"] == (4, 1)


def test_conditions_reach_the_net_positionally_or_by_keyword():
    x, t, c = torch.randn(3, 2), torch.rand(3), torch.randn(3, 2)
    pos = FlowModel(lambda_net(lambda x_, t_, c_: x_ + c_), condition="positional")
    kw = FlowModel(lambda_net(lambda x_, t_, cond=None: x_ - cond), condition="cond")
    torch.testing.assert_close(pos(x, t, label=c), x + c)
    torch.testing.assert_close(kw(x, t, label=c), x - c)
    with pytest.raises(ValueError, match="takes none"):
        FlowModel(lambda_net(lambda x_, t_: x_))(x, t, label=c)


def test_as_flow_model_keeps_networks_that_speak_the_convention_and_wraps_the_rest():
    mlp = MLP(2, 16, 1)
    assert speaks_convention(mlp) and as_flow_model(mlp, 1) is mlp
    plain = nn.Linear(2, 2)
    assert isinstance(as_flow_model(plain, 1), FlowModel)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        as_flow_model(lambda x, t: x, 1)
    with pytest.raises(ValueError, match="shaped like x"):
        FlowModel(lambda_net(lambda x_, t_: x_[:, :1]))(torch.randn(2, 2), torch.rand(2))
    with pytest.raises(ValueError, match="unknown direction"):
        FlowModel(plain, direction="backwards")
