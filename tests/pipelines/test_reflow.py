"""Reflow and distillation pipelines: reflow never raises the transport cost; children keep their parent's data
and source and start from its weights; configs; refusals."""

import json

import pytest
import torch

from straightflow.data.pairs import MANIFEST, load_pairs
from straightflow.data.source import GaussianSource
from straightflow.methods.rectified import coupling_report, independent_coupling
from straightflow.pipelines.distill import distill_config
from straightflow.pipelines.pairs import generate_reflow_pairs
from straightflow.pipelines.reflow import reflow, reflow_config
from straightflow.runs import load_run, sample_run
from straightflow.training.checkpoint import save_checkpoint
from straightflow.training.config import RunConfig, apply_overrides, config_to_dict
from straightflow.training.trainer import Trainer

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
    generate_reflow_pairs(lambda x, t, label: torch.zeros_like(x), GaussianSource(2), 50, tmp_path / "p",
                          solver="euler", steps=1, label_sampler=lambda m, g: torch.zeros(m, dtype=torch.long))
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
