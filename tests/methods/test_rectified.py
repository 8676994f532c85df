"""Rectified flow: reflow lowers transport cost, straight flows score 0, crossings are exact, shards resume."""

import json
import math

import pytest
import torch

import straightflow.methods.rectified as rectified
from straightflow.data.pairs import MANIFEST, PairSource, load_pairs, shard_path
from straightflow.data.source import GaussianSource
from straightflow.methods.flow_matching import FlowMatching
from straightflow.methods.rectified import (
    coupling_report,
    distill_config,
    generate_reflow_pairs,
    independent_coupling,
    reflow,
    reflow_config,
)
from straightflow.methods.time_sampling import GridTime
from straightflow.metrics.flows import straightness
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.paths.schedule import get_scheduler
from straightflow.runs import load_run, sample_run
from straightflow.solvers.integrate import odeint
from straightflow.training.checkpoint import save_checkpoint
from straightflow.training.config import RunConfig, apply_overrides, config_to_dict
from straightflow.training.trainer import Trainer


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


# ----------------------------------------------------------------------------------------- pair shards
class Interrupted(Exception):
    pass


def _generate(folder, **kw):
    args = {"velocity": _rotation, "source": GaussianSource(2), "n": 50, "out_dir": folder, "shard_size": 16,
            "solver": "rk4", "steps": 4, "seed": 3}
    return generate_reflow_pairs(**{**args, **kw})


def test_pair_shards_resume_after_an_interruption_without_duplicates_or_gaps(tmp_path, monkeypatch):
    _generate(tmp_path / "whole")
    save = rectified.save_shard
    written = []

    def dying(folder, index, *args):
        if len(written) == 2:
            raise Interrupted
        written.append(index)
        return save(folder, index, *args)

    monkeypatch.setattr(rectified, "save_shard", dying)
    with pytest.raises(Interrupted):
        _generate(tmp_path / "broken")
    assert not (tmp_path / "broken" / MANIFEST).exists()  # an interrupted folder is not loadable
    with pytest.raises(ValueError, match="did not finish"):
        load_pairs(tmp_path / "broken")
    (tmp_path / "broken" / ".pairs-00002.safetensors.tmp-999").write_bytes(b"half a shard")  # a killed write
    redone = []

    def counting(folder, index, *args):
        redone.append(index)
        return save(folder, index, *args)

    monkeypatch.setattr(rectified, "save_shard", counting)
    _generate(tmp_path / "broken")
    assert written == [0, 1] and redone == [2, 3]  # only the missing shards were made
    assert not list((tmp_path / "broken").glob(".*tmp*"))
    whole, resumed = load_pairs(tmp_path / "whole"), load_pairs(tmp_path / "broken")
    assert whole[0].shape == (50, 2) and whole[2] is None
    for a, b in zip(whole[:2], resumed[:2], strict=True):
        assert torch.equal(a, b)
    assert torch.unique(whole[0], dim=0).shape[0] == 50  # no duplicated rows
    # x1 is the rk4 solution of the rotation: x0 turned by one radian
    c, s = math.cos(1.0), math.sin(1.0)
    turned = torch.stack([c * whole[0][:, 0] - s * whole[0][:, 1], s * whole[0][:, 0] + c * whole[0][:, 1]], 1)
    torch.testing.assert_close(whole[1], turned, atol=1e-3, rtol=0)


def test_pairs_keep_labels_and_refuse_other_settings(tmp_path):
    def labels(m, g):
        return torch.randint(0, 3, (m,), generator=g)

    seen = []

    def conditional(x, t, label):
        seen.append(label)
        return torch.zeros_like(x) + label[:, None].to(x.dtype)  # x1 = x0 + label

    _generate(tmp_path, velocity=conditional, label_sampler=labels)
    x0, x1, label = load_pairs(tmp_path)
    assert label.shape == (50,) and label.dtype == torch.long
    torch.testing.assert_close(x1, x0 + label[:, None].float())
    assert PairSource(x0, x1, label).sample(8, torch.Generator()).label.shape == (8,)
    with pytest.raises(ValueError, match="other settings.*seed"):
        _generate(tmp_path, velocity=conditional, label_sampler=labels, seed=4)


def test_load_pairs_names_missing_corrupt_and_mismatched_shards(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_pairs(tmp_path / "nowhere")
    _generate(tmp_path / "p")
    shard_path(tmp_path / "p", 1).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="pairs-00001.safetensors is corrupt"):
        load_pairs(tmp_path / "p")
    shard_path(tmp_path / "p", 1).unlink()
    with pytest.raises(ValueError, match="pairs-00001.safetensors is missing"):
        load_pairs(tmp_path / "p")
    _generate(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / MANIFEST).read_text())
    (tmp_path / "q" / MANIFEST).write_text(json.dumps({**manifest, "n": 60, "shards": 4}))
    with pytest.raises(ValueError, match="pairs-00003.safetensors has x0 of shape"):
        load_pairs(tmp_path / "q")
    for bad in (0, -5):
        with pytest.raises(ValueError, match="number of pairs must be an int >= 1"):
            _generate(tmp_path / "r", n=bad)


# ----------------------------------------------------------------------------------------- reflow
# On the CPU whatever the machine: batches and pairs are compared with CPU tensors below.
TINY = {"data.data": "8gaussians", "model.arch": "mlp", "model.width": 48, "model.depth": 2,
        "train.batch_size": 256, "train.log_every": 100, "optim.warmup_steps": 20, "optim.lr": 3e-3,
        "optim.lr_schedule": "constant", "data.prefetch": False, "train.device": "cpu"}
PAIRS = {"solver": "euler", "steps": 24, "shard_size": 1000}


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    root = tmp_path_factory.mktemp("rf")
    cfg = apply_overrides(RunConfig(), {**TINY, "train.steps": 600, "train.ckpt_every": 600})
    Trainer(cfg, root / "rf1", progress=False).fit()
    over = {"train.ckpt_every": 250, "train.log_every": 50}
    reflow(root / "rf1", root / "rf2", 2000, train_steps=250, pair_options=PAIRS, overrides=over, device="cpu")
    reflow(root / "rf2", root / "rf3", 2000, train_steps=250, pair_options=PAIRS, overrides=over, device="cpu")
    return root


def test_reflow_never_raises_the_transport_cost_of_its_coupling(lineage):
    data, source = load_run(lineage / "rf1", device="cpu").data_and_source()
    n = 1500
    costs = [coupling_report(*independent_coupling(data, source, n, seed=11)).transport_cost]
    for name in ("rf1", "rf2", "rf3"):
        run = load_run(lineage / name, device="cpu")
        sol = sample_run(run, n, solver="euler", steps=24, seed=11, return_trajectory=True)
        costs.append(coupling_report(sol.trajectory[0], sol.x).transport_cost)
    # independent -> 1-RF drops a lot; every further reflow may only lower it (2% tolerance for noise)
    assert costs[1] < 0.9 * costs[0], costs
    assert costs[2] <= 1.02 * costs[1], costs
    assert costs[3] <= 1.02 * costs[2], costs


def test_a_reflowed_run_keeps_data_and_source_and_starts_from_its_parent(lineage):
    parent, child = load_run(lineage / "rf1", device="cpu"), load_run(lineage / "rf2", device="cpu")
    c = child.config
    assert (c.data.data, c.data.source, c.method.name) == ("8gaussians", "gaussian", "fm")
    assert c.data.pairs == str((lineage / "rf2" / "pairs").resolve())
    assert c.train.init_from == str((lineage / "rf1").resolve())
    manifest = json.loads((lineage / "rf2" / "pairs" / MANIFEST).read_text())
    assert manifest["n"] == 2000 and manifest["source_run"] == str((lineage / "rf1").resolve())
    # init_from: before its first step a trainer of the child config holds the parent's EMA weights
    fresh = Trainer(replace_steps(c), lineage / "unused", progress=False)
    for (name, a), b in zip(parent.model.state_dict().items(), fresh.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    batch = fresh.make_batch(0)  # rows of the fixed pairs, never re-coupled
    x0, x1, _ = load_pairs(lineage / "rf2" / "pairs")
    rows = (batch.x0[:, None] == x0[None]).all(-1).float().argmax(1)
    assert torch.equal(x1[rows], batch.x1)


def test_labelled_pairs_need_a_conditional_run(tmp_path):
    _generate(tmp_path / "p", velocity=lambda x, t, label: torch.zeros_like(x),
              label_sampler=lambda m, g: torch.zeros(m, dtype=torch.long))
    cfg = apply_overrides(RunConfig(), {**TINY, "data.pairs": str(tmp_path / "p")})
    with pytest.raises(ValueError, match="are labelled but the run has 0 classes"):
        Trainer(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="data.coupling must be 'independent'"):
        Trainer(apply_overrides(cfg, {"data.coupling": "ot"}), tmp_path / "run", progress=False)


def replace_steps(cfg):
    return apply_overrides(cfg, {"train.steps": 1})


def test_configs_of_reflow_and_distillation(tmp_path):
    parent = apply_overrides(RunConfig(), {"data.coupling": "ot", "data.source": "moons"})
    r = reflow_config(parent, tmp_path / "p", tmp_path / "run", steps=10)
    assert (r.data.coupling, r.data.source, r.method.time_sampler, r.train.steps) == ("independent", "moons",
                                                                                        "uniform", 10)
    d = distill_config(parent, tmp_path / "p", tmp_path / "run", k=2, steps=10)
    assert (d.method.time_sampler, d.method.grid_steps) == ("grid", 2)
    assert reflow_config(d, tmp_path / "p", tmp_path / "run", 5).method.time_sampler == "uniform"


def test_reflow_refuses_meanflow_runs_and_bad_counts(tmp_path, lineage):
    cfg = apply_overrides(RunConfig(), {"method.name": "meanflow"})
    save_checkpoint(tmp_path / "mf" / "checkpoint.safetensors", {"x": torch.zeros(1)},
                    {"config": config_to_dict(cfg), "step": 1, "dim": 2, "num_classes": 0})
    with pytest.raises(ValueError, match="meanflow run.*flow-matching runs .* only"):
        reflow(tmp_path / "mf", tmp_path / "out", 10)
    with pytest.raises(ValueError, match="--pairs .* must be an int >= 1, got 0"):
        reflow(lineage / "rf1", tmp_path / "out", 0)
    with pytest.raises(ValueError, match="already holds a run"):
        reflow(lineage / "rf1", lineage / "rf2", 10)
    with pytest.raises(ValueError, match="no checkpoint"):
        reflow(tmp_path / "nothing", tmp_path / "out", 10)
