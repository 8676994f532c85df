"""Flow matching learns the closed-form marginal velocity of a Gaussian-mixture target."""

import torch

from straightflow.methods.flow_matching import FlowMatching, flow_matching_loss
from straightflow.methods.time_sampling import UniformTime
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.paths.gaussian import GaussianMixture
from straightflow.paths.schedule import LinearScheduler


def test_trained_model_approaches_closed_form_marginal_velocity():
    """Tolerance: RMSE(v_theta - v*) over x ~ p_t, t in [0.05, 0.95], below 15% of the RMS of v*."""
    torch.manual_seed(0)
    target = GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.tensor([0.5, 0.5])
    )
    path = AffinePath(LinearScheduler())
    model = MLP(2, width=64, depth=3)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        x1 = target.sample(256, g).float()
        x0 = torch.randn(256, 2, generator=g)
        t = torch.rand(256, generator=g)
        loss = flow_matching_loss(model, path, x0, x1, t).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = torch.linspace(0.05, 0.95, 2000)
    x1 = target.sample(2000, g).float()
    x_t = path.sample(torch.randn(2000, 2, generator=g), x1, t).x_t
    with torch.no_grad():
        err = model(x_t, t) - target.marginal_velocity(x_t.double(), t.double()).float()
        ref = target.marginal_velocity(x_t.double(), t.double()).float()
    rel = err.square().mean().sqrt() / ref.square().mean().sqrt()
    assert rel < 0.15, f"relative RMSE {rel:.3f}"


def test_loss_is_zero_for_the_exact_conditional_velocity_and_per_example():
    path = AffinePath(LinearScheduler())

    class Exact(torch.nn.Module):
        """Knows x1 - x0 for one fixed batch: the conditional target itself."""

        def __init__(self, v):
            super().__init__()
            self.v = v

        def forward(self, x, t, label=None):
            return self.v

    x0, x1, t = torch.randn(8, 3), torch.randn(8, 3), torch.rand(8)
    loss = flow_matching_loss(Exact(x1 - x0), path, x0, x1, t)
    assert loss.shape == (8,) and torch.all(loss == 0)
    wrong = flow_matching_loss(Exact(x1 - x0 + 1.0), path, x0, x1, t)
    torch.testing.assert_close(wrong, torch.ones(8))


def test_method_draws_times_from_its_sampler_and_returns_per_example_loss():
    method = FlowMatching(AffinePath(LinearScheduler()), UniformTime())
    model = MLP(2, width=8, depth=1)
    batch = CoupledBatch(torch.randn(16, 2), torch.randn(16, 2), None)
    out = method.loss(model, batch, torch.Generator().manual_seed(0))
    assert out.loss.shape == (16,)
    again = method.loss(model, batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss, again.loss)
