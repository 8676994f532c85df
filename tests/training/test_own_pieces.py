"""Trainer with networks and data of the user's own: train, checkpoint, load and sample through the API."""

import pytest
import torch
from torch import nn

from straightflow.runs import load_run, sample_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer


class PlainVelocity(nn.Module):
    """A user's network that knows nothing of straightflow: net(x, t) with t as (B,)."""

    def __init__(self, dim=2, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], 1))


class PlainAverage(nn.Module):
    """net(x, s, t, c): a user's average-velocity network with a context vector."""

    def __init__(self, dim=2, cdim=1, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2 + cdim, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, s, t, c):
        return self.net(torch.cat([x, s[:, None], t[:, None], torch.nan_to_num(c)], 1))


def _cfg(method, steps=40):
    return apply_overrides(RunConfig(), {"method.name": method, "train.steps": steps, "train.batch_size": 32,
                                         "train.log_every": 10, "train.ckpt_every": steps, "train.device": "cpu",
                                         "model.width": 32})


def test_own_network_and_tensor_data_train_and_sample(tmp_path):
    x = torch.randn(200, 2) * 0.3 + torch.tensor([2.0, -1.0])
    Trainer(_cfg("fm"), tmp_path / "r", progress=False, model=PlainVelocity(), data=x).fit()
    with pytest.raises(ValueError, match="pass the module again"):
        load_run(tmp_path / "r")
    run = load_run(tmp_path / "r", device="cpu", model=PlainVelocity())
    assert run.config.model.arch == "custom" and run.config.data.data == "python:tensor"
    y = sample_run(run, 64, solver="euler", steps=4).x
    assert y.shape == (64, 2) and torch.isfinite(y).all()


def test_meanflow_on_own_network_without_a_tangent_pass_uses_torch_func(tmp_path):
    x = torch.randn(200, 2)
    c = torch.rand(200, 1)
    trainer = Trainer(_cfg("meanflow"), tmp_path / "m", progress=False, model=PlainAverage(), data=(x, c))
    assert trainer.cfg.data.coupling == "independent"  # MeanFlow's OT default would break the condition
    trainer.fit()
    lines = (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    run = load_run(tmp_path / "m", device="cpu", model=PlainAverage())
    assert run.condition.shape == (1,)
    y = sample_run(run, 16, steps=1, cond=torch.tensor([0.5])).x
    assert y.shape == (16, 2) and torch.isfinite(y).all()


def test_builtin_mlp_learns_a_tensor_condition(tmp_path):
    """c in {-1, +1} (as a float context) moves the data by 2c: the conditional samples must follow c."""
    g = torch.Generator().manual_seed(0)
    c = (torch.randint(0, 2, (1000, 1), generator=g) * 2 - 1).float()
    x = 2 * c.expand(-1, 2) + 0.2 * torch.randn(1000, 2, generator=g)
    cfg = apply_overrides(_cfg("fm", steps=600), {"train.batch_size": 128, "model.width": 64, "optim.lr": 3e-3})
    Trainer(cfg, tmp_path / "c", progress=False, data=(x, c)).fit()
    run = load_run(tmp_path / "c", device="cpu")
    plus = sample_run(run, 200, solver="euler", steps=16, cond=torch.tensor([1.0])).x.mean(0)
    minus = sample_run(run, 200, solver="euler", steps=16, cond=torch.tensor([-1.0])).x.mean(0)
    assert (plus - 2).abs().max() < 0.5 and (minus + 2).abs().max() < 0.5
    guided = sample_run(run, 200, solver="euler", steps=16, cond=torch.tensor([1.0]), guidance=2.0).x
    assert torch.isfinite(guided).all()
    with pytest.raises(ValueError, match="conditions must have shape"):
        sample_run(run, 4, cond=torch.zeros(4, 3))


def test_own_source_is_recorded_and_sampling_asks_for_its_points(tmp_path):
    x1 = torch.randn(200, 2) + 3.0
    x0 = torch.randn(200, 2) - 3.0
    Trainer(_cfg("fm"), tmp_path / "s", progress=False, data=x1, source=x0).fit()
    run = load_run(tmp_path / "s", device="cpu")
    assert run.config.data.source == "python:tensor"
    with pytest.raises(ValueError, match=r"pass its points to sample from \(sample_run\(..., x0=...\)\)"):
        sample_run(run, 8)
    y = sample_run(run, 8, x0=x0[:8], solver="euler", steps=4).x
    assert y.shape == (8, 2)
