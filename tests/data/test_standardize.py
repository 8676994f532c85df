"""Per-feature standardisation: the math, its record in the run, and samples that come back in the data's units."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from straightflow.data.source import FileSource, ToySource
from straightflow.data.standardize import Standardize, StandardizedData, transform_from_meta, wants_standardize
from straightflow.runs import load_run, sample_run
from straightflow.training.checkpoint import CHECKPOINT, read_meta
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

TINY = {"model.width": 32, "model.depth": 2, "train.batch_size": 64, "train.log_every": 50, "optim.warmup_steps": 10,
        "optim.lr": 3e-3, "optim.ema_decay": 0.9, "data.prefetch": False}


def test_forward_and_inverse_round_trip_and_standardise_the_fitted_rows():
    rows = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1e6, 1e-3, 5.0]) + torch.tensor([3e6, 0.0, -2.0])
    t = Standardize.fit(rows)
    z = t.forward(rows.float())
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-4) and torch.allclose(z.std(0), torch.ones(3), atol=1e-2)
    error = (t.inverse(z).double() - rows) / rows.std(0)  # float32 round trip, relative to each feature's scale
    assert error.abs().max() < 1e-5
    assert t.log_det_inverse == pytest.approx(float(t.std.double().log().sum()))


def test_a_constant_feature_gets_std_one_without_error():
    t = Standardize.fit(torch.tensor([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]]))
    assert t.std[1] == 1.0 and torch.isfinite(t.forward(torch.tensor([[2.0, 7.0]]))).all()


def test_the_metadata_record_round_trips_exactly_and_malformed_ones_are_one_line_errors():
    t = Standardize.fit(torch.randn(100, 4) * 1e5)
    back = transform_from_meta(json.loads(json.dumps(t.to_meta())))
    assert torch.equal(back.mean, t.mean) and torch.equal(back.std, t.std)
    assert transform_from_meta(None) is None
    for bad in ({"kind": "minmax"}, {"kind": "standardize", "mean": [0.0], "std": [0.0]},
                {"kind": "standardize", "mean": [0.0, 1.0], "std": [1.0]}, {"kind": "standardize", "mean": "x"}):
        with pytest.raises(ValueError, match="run/checkpoint has a malformed data_transform"):
            transform_from_meta(bad, "run/checkpoint")


def test_auto_standardises_data_files_only_and_on_refuses_images():
    rows = FileSource(torch.randn(20, 2))
    assert wants_standardize("auto", rows) and not wants_standardize("auto", ToySource("moons"))
    assert wants_standardize("on", ToySource("moons")) and not wants_standardize("off", rows)
    image_like = type("Images", (), {"shape": (1, 8, 8), "name": "digits"})()
    with pytest.raises(ValueError, match="data.standardize=on is for vector data"):
        wants_standardize("on", image_like)


def test_the_wrapped_source_serves_standardised_rows_and_keeps_the_rest():
    base = FileSource(torch.randn(50, 2) * 100 + 1000)
    data = StandardizedData(base, Standardize.fit(base.train_rows))
    x, label = data.rows(torch.arange(10))
    assert label is None and torch.allclose(x, data.transform.forward(base.train_rows[:10]))
    assert data.num_rows == base.num_rows and data.shape == (2,) and hasattr(data, "rows")
    assert not hasattr(StandardizedData(ToySource("moons"), data.transform), "rows")


def _file(tmp_path, scale: float = 1e6):
    x = np.random.default_rng(0).normal(size=(1500, 2)) * [scale, 2 * scale] + [5 * scale, -3 * scale]
    np.save(tmp_path / "big.npy", x.astype(np.float32))
    return x


def _train(tmp_path, name, steps=300, **extra):
    cfg = apply_overrides(RunConfig(), {**TINY, "data.data": str(tmp_path / "big.npy"), "train.steps": steps,
                                        **extra})
    trainer = Trainer(cfg, tmp_path / name, progress=False)
    trainer.fit()
    return trainer


def test_data_on_a_scale_of_1e6_are_learned_and_sampled_in_their_own_units(tmp_path):
    x = _file(tmp_path)
    _train(tmp_path, "run")
    meta = read_meta(tmp_path / "run" / CHECKPOINT)
    assert meta["data_transform"]["kind"] == "standardize" and meta["config"]["data"]["standardize"] == "on"
    samples = sample_run(load_run(tmp_path / "run"), 2000, solver="euler", steps=8).x.numpy()
    # Before: the network trained on raw values drew samples with std ~2.5 against 1e6 in the data.
    assert np.allclose(samples.mean(0), x.mean(0), rtol=0.1)
    assert np.allclose(samples.std(0), x.std(0), rtol=0.3)


def test_standardisation_off_trains_on_raw_values_and_warns_about_their_scale(tmp_path):
    _file(tmp_path)
    with pytest.warns(UserWarning, match="largest per-feature std of .* data.standardize is off"):
        _train(tmp_path, "raw", steps=2, **{"data.standardize": "off"})
    meta = read_meta(tmp_path / "raw" / CHECKPOINT)
    assert "data_transform" not in meta and meta["config"]["data"]["standardize"] == "off"


def test_a_resumed_run_keeps_its_statistics_and_matches_an_unbroken_one(tmp_path):
    _file(tmp_path)
    _train(tmp_path, "whole", steps=40)
    cfg = apply_overrides(RunConfig(), {**TINY, "data.data": str(tmp_path / "big.npy"), "train.steps": 40})
    first = Trainer(cfg, tmp_path / "broken", progress=False)
    first.fit(max_steps=20)
    first.save()  # as if killed after a checkpoint at step 20
    resumed = Trainer(cfg, tmp_path / "broken", resume=True, progress=False)
    assert torch.equal(resumed.transform.std, first.transform.std)
    resumed.fit()
    a = load_run(tmp_path / "whole").model.state_dict()
    b = load_run(tmp_path / "broken").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_samples_and_their_log_densities_are_mapped_to_the_datas_units(tmp_path):
    _file(tmp_path, scale=1e3)
    _train(tmp_path, "run", steps=5)
    run = load_run(tmp_path / "run")
    raw = dataclasses.replace(run, meta={k: v for k, v in run.meta.items() if k != "data_transform"})
    data_units = sample_run(run, 64, solver="euler", steps=4, with_logp=True, return_trajectory=True)
    model_units = sample_run(raw, 64, solver="euler", steps=4, with_logp=True, return_trajectory=True)
    t = run.transform
    assert torch.allclose(data_units.x, t.inverse(model_units.x))
    assert torch.allclose(data_units.trajectory, t.inverse(model_units.trajectory))
    assert torch.allclose(data_units.log_prob, model_units.log_prob - t.log_det_inverse)
