"""Portable runs: a run samples without its training data, from any directory, and evaluation refuses data that
are not the ones it was trained on."""

import json
import shutil

import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.runs import load_run, sample_run
from straightflow.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

TINY = {"model.width": 16, "model.depth": 1, "train.batch_size": 32, "train.steps": 20, "train.log_every": 10,
        "train.device": "cpu"}


def _points(path, seed=0, shift=0.0):
    np.save(path, (np.random.default_rng(seed).normal(size=(300, 2)) + shift).astype(np.float32))


def _train(where, monkeypatch, **fields):
    """A tiny run trained from the working directory `where`, with relative paths in its config."""
    monkeypatch.chdir(where)
    Trainer(apply_overrides(RunConfig(), {**TINY, **fields}), "run", progress=False).fit()
    return where / "run"


def test_a_file_run_samples_from_another_directory_after_its_data_file_is_moved(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _points(tmp_path / "a" / "pts.npy")
    run_dir = _train(tmp_path / "a", monkeypatch, **{"data.data": "pts.npy"})
    before = sample_run(load_run(run_dir), 64, solver="euler", steps=4, seed=3).x
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["data"] == str(tmp_path / "a" / "pts.npy")  # absolute since the run started
    shutil.move(tmp_path / "a" / "pts.npy", tmp_path / "b" / "elsewhere.npy")
    monkeypatch.chdir(tmp_path / "b")
    run = load_run(run_dir)
    assert run.shape == (2,) and run.meta["source"]["kind"] == "gaussian"
    torch.testing.assert_close(sample_run(run, 64, solver="euler", steps=4, seed=3).x, before, rtol=0, atol=0)
    assert main(["sample", str(run_dir), "--n", "20", "--out", str(tmp_path / "b" / "s.npy")]) == 0
    assert np.load(tmp_path / "b" / "s.npy").shape == (20, 2)


def test_eval_refuses_a_changed_or_missing_data_file_and_takes_other_data_deliberately(tmp_path, monkeypatch, capsys):
    _points(tmp_path / "pts.npy")
    run_dir = _train(tmp_path, monkeypatch, **{"data.data": "pts.npy"})
    argv = ["eval", str(run_dir), "--n", "10", "--solver", "euler", "--steps", "2"]
    # another directory holding a different file at the same relative path: the run's own file is scored
    (tmp_path / "other").mkdir()
    _points(tmp_path / "other" / "pts.npy", seed=1, shift=50.0)
    monkeypatch.chdir(tmp_path / "other")
    assert main(argv) == 0
    assert json.loads((run_dir / "eval.json").read_text())["rows"][0]["w2_ratio"] < 20
    capsys.readouterr()
    _points(tmp_path / "pts.npy", seed=1, shift=50.0)  # the file changes under the run
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"data file {tmp_path / 'pts.npy'} changed since the run was trained (sha256" in err
    assert "pass --data to score against another file deliberately" in err
    assert main([*argv, "--data", "pts.npy"]) == 0  # deliberately: the shifted file, scored far off
    assert json.loads((run_dir / "eval.json").read_text())["rows"][0]["w2_ratio"] > 20
    (tmp_path / "pts.npy").unlink()
    with pytest.raises(ValueError, match=r"data file .*pts.npy not found; pass --data PATH"):
        load_run(run_dir).load_data()
    assert main(["likelihood", str(run_dir), "--n", "10"]) == 2
    assert "not found; pass --data PATH" in capsys.readouterr().err


def test_a_data_to_data_run_checks_its_source_file_before_sampling(tmp_path, monkeypatch):
    _points(tmp_path / "source.npy", seed=2)
    _points(tmp_path / "target.npy", seed=3, shift=4.0)
    run = load_run(_train(tmp_path, monkeypatch, **{"data.data": "target.npy", "data.source": "source.npy"}))
    assert run.source().name == str(tmp_path / "source.npy")
    _points(tmp_path / "source.npy", seed=4)
    with pytest.raises(ValueError, match="source file .*source.npy changed since the run was trained"):
        sample_run(run, 8)
    assert sample_run(run, 8, x0=torch.zeros(8, 2)).x.shape == (8, 2)  # a given x0 needs no source


def test_a_run_does_not_resume_on_changed_data(tmp_path, monkeypatch):
    _points(tmp_path / "pts.npy")
    _train(tmp_path, monkeypatch, **{"data.data": "pts.npy"})
    _points(tmp_path / "pts.npy", seed=1)
    cfg = apply_overrides(RunConfig(), {**TINY, "data.data": "pts.npy", "train.steps": 30})
    with pytest.raises(ValueError, match="cannot resume .*pts.npy changed since the run started"):
        Trainer(cfg, "run", resume=True, progress=False)


def test_a_run_saved_without_provenance_still_loads_samples_and_resumes(tmp_path, monkeypatch):
    _points(tmp_path / "pts.npy")
    run_dir = _train(tmp_path, monkeypatch, **{"data.data": "pts.npy"})
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
    old = {k: v for k, v in meta.items() if k not in ("shape", "data", "source", "class_names")}
    old["config"]["data"]["data"] = "pts.npy"  # as runs were saved before: the path as given
    save_checkpoint(run_dir / CHECKPOINT, tensors, old)
    run = load_run(run_dir)
    assert run.shape == (2,) and sample_run(run, 8).x.shape == (8, 2)
    assert run.load_data().name == "pts.npy"  # relative to the working directory, unchecked, as before
    cfg = apply_overrides(RunConfig(), {**TINY, "data.data": "pts.npy", "train.steps": 30})
    trainer = Trainer(cfg, "run", resume=True, progress=False)  # relative and absolute paths name one file
    assert trainer.step == 20
