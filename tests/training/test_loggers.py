"""Training logs: metrics.jsonl keeps its format and gains grad norm and speed; TensorBoard and W&B (offline)
receive the same scalars and the sample pictures; a missing backend package is a one-line error up front."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.loggers import JsonlLogger, figure_to_array, parse_log_spec
from straightflow.training.trainer import Trainer, grad_norm

TINY = {"data.data": "moons", "model.width": 16, "model.depth": 1, "train.steps": 20, "train.batch_size": 32,
        "train.log_every": 10, "optim.warmup_steps": 2, "train.device": "cpu"}


def tiny(**extra) -> RunConfig:
    return apply_overrides(RunConfig(), {**TINY, **extra})


def records(path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]


def test_log_spec_always_keeps_jsonl_first_and_names_an_unknown_backend():
    assert parse_log_spec("tensorboard, wandb,jsonl") == ["jsonl", "tensorboard", "wandb"]
    assert parse_log_spec("") == ["jsonl"]
    with pytest.raises(ValueError, match="unknown train.log backend 'mlflow'"):
        parse_log_spec("jsonl,mlflow")


def test_missing_backend_package_is_one_line_naming_the_extra_before_training(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'straightflow\[tensorboard\]'") as info:
        Trainer(tiny(**{"train.log": "tensorboard"}), tmp_path / "run", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_metrics_jsonl_keeps_its_format_and_adds_grad_norm_and_speed(tmp_path):
    Trainer(tiny(**{"method.name": "meanflow", "optim.grad_clip": 0.0}), tmp_path, progress=False).fit()
    lines = records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in lines] == [10, 20]
    for r in lines:
        assert list(r)[:3] == ["step", "loss", "lr"]
        assert {"loss_unweighted", "grad_norm", "steps_per_s", "examples_per_s"} <= set(r)
        assert r["grad_norm"] > 0 and r["examples_per_s"] == pytest.approx(32 * r["steps_per_s"])
    assert not (tmp_path / "quality.jsonl").exists()  # train.sample_every = 0: no snapshots


def test_grad_norm_is_the_global_l2_norm_of_all_gradients():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    net(torch.randn(5, 3)).square().sum().backward()
    flat = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert float(grad_norm(net.parameters())) == pytest.approx(float(flat.norm()), rel=1e-6)


def test_sample_every_logs_w2_against_its_floor_and_a_picture_at_each_interval_and_the_end(tmp_path):
    Trainer(tiny(**{"train.steps": 25, "train.sample_every": 10}), tmp_path, progress=False).fit()
    quality = records(tmp_path / "quality.jsonl")
    assert [r["step"] for r in quality] == [10, 20, 25]
    for r in quality:
        assert r["w2_floor"] > 0 and r["w2_ratio"] == pytest.approx(r["w2"] / r["w2_floor"])
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        "samples_0000010.png", "samples_0000020.png", "samples_0000025.png"]


def test_image_runs_log_a_sample_grid_without_a_metric(tmp_path):
    cfg = tiny(**{"data.data": "digits", "data.conditional": True, "model.channels": 8, "model.channel_mult": "1,2",
                  "model.n_frequencies": 4, "train.steps": 2, "train.batch_size": 8, "train.sample_every": 2,
                  "data.prefetch": False})
    Trainer(cfg, tmp_path, progress=False).fit()
    assert not (tmp_path / "quality.jsonl").exists()
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "snapshots" / "samples_0000002.png"))
    k = 256 // (8 * 9 + 1)  # enlarged to at least 256 pixels wide
    assert grid.shape == (k * (10 * 9 + 1), k * (8 * 9 + 1), 3)  # a row of 8 per class, 8x8 digits, 1-pixel padding


def test_tensor_conditioned_runs_snapshot_the_marginal_of_their_null_condition(tmp_path):
    g = torch.Generator().manual_seed(0)
    y, c = torch.randn(400, 2, generator=g), torch.rand(400, 1, generator=g)
    Trainer(tiny(**{"train.steps": 5, "train.sample_every": 5}), tmp_path, data=(y, c), progress=False).fit()
    (record,) = records(tmp_path / "quality.jsonl")
    assert record["step"] == 5 and 0 < record["w2"] < float("inf") and record["w2_floor"] > 0


def test_jsonl_groups_go_to_their_own_files_and_figures_become_rgb_arrays(tmp_path):
    log = JsonlLogger(tmp_path)
    log.log_scalars(3, {"loss": 1.5})
    log.log_scalars(3, {"w2": 0.2}, group="quality")
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    log.log_image(3, "samples", fig)
    assert records(tmp_path / "metrics.jsonl") == [{"step": 3, "loss": 1.5}]
    assert records(tmp_path / "quality.jsonl") == [{"step": 3, "w2": 0.2}]
    assert (tmp_path / "snapshots" / "samples_0000003.png").stat().st_size > 0
    array = figure_to_array(np.zeros((4, 5)))
    assert array.shape == (4, 5, 3) and array.dtype == np.uint8
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 5\)"):
        figure_to_array(np.zeros((2, 3, 5)))


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_receives_the_training_scalars_and_the_sample_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(tiny(**{"train.log": "tensorboard", "train.sample_every": 10}), tmp_path, progress=False).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    for name in ("loss", "lr", "grad_norm", "steps_per_s", "examples_per_s"):
        assert [e.step for e in events.Scalars(f"train/{name}")] == [10, 20], name
    jsonl = records(tmp_path / "metrics.jsonl")
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in jsonl])
    assert [e.step for e in events.Scalars("quality/w2_ratio")] == [10, 20]
    assert "quality/samples" in tags["images"] and (tmp_path / "metrics.jsonl").exists()  # jsonl stays on


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")
def test_wandb_offline_run_holds_the_scalars_and_the_sample_pictures(tmp_path, monkeypatch):
    for var, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(tmp_path / "cfg"),
                       "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(var, value)
    out = tmp_path / "run"
    Trainer(tiny(**{"train.log": "wandb", "train.sample_every": 20}), out, progress=False).fit()
    (run,) = (out / "wandb").glob("offline-run-*")
    history = next(run.glob("*.wandb")).read_bytes()
    for key in (b"train/loss", b"train/grad_norm", b"train/steps_per_s", b"quality/w2_ratio"):
        assert key in history, key
    assert len(list((run / "files" / "media" / "images" / "quality").glob("samples_20_*.png"))) == 1


def test_resume_may_change_the_loggers_and_truncates_the_quality_log(tmp_path):
    cfg = tiny(**{"train.sample_every": 5, "train.ckpt_every": 10})
    Trainer(cfg, tmp_path, progress=False).fit()
    (tmp_path / "quality.jsonl").write_text((tmp_path / "quality.jsonl").read_text() + '{"step": 99, "w2": 1}\n')
    resumed = Trainer(tiny(**{"train.sample_every": 10, "train.steps": 30, "train.ckpt_every": 10}), tmp_path,
                      resume=True, progress=False)
    assert resumed.step == 20
    resumed.fit()
    assert [r["step"] for r in records(tmp_path / "quality.jsonl")] == [5, 10, 15, 20, 30]
