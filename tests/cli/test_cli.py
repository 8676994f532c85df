"""The command line end to end on a tiny run, and its one-line errors for bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from straightflow.cli.main import main

TINY = ["--steps", "30", "--no-progress", "--set", "model.width=16", "--set", "model.depth=1",
        "--set", "train.batch_size=32", "--set", "train.log_every=10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--method", "fm", "--data", "moons", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_checkpoint_metrics_and_plots(run_dir):
    for name in ("checkpoint.safetensors", "config.json", "metrics.jsonl", "loss.png", "samples.png"):
        assert (run_dir / name).stat().st_size > 0, name


def test_sample_writes_array_of_shape_n_by_d_and_picture(run_dir, tmp_path):
    out = tmp_path / "s.npy"
    assert main(["sample", str(run_dir), "--n", "50", "--solver", "euler", "--steps", "4", "--out", str(out)]) == 0
    assert np.load(out).shape == (50, 2)
    assert out.with_suffix(".png").exists()


def test_eval_prints_rows_per_solver_and_writes_json(run_dir, capsys):
    code = main(["eval", str(run_dir), "--n", "200", "--solver", "euler", "--steps", "1,2",
                 "--solver", "dopri5"])
    assert code == 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert [(r["solver"], r["steps"], r["nfe"] > 0) for r in report["rows"]] == [
        ("euler", 1, True), ("euler", 2, True), ("dopri5", 1, True)
    ]
    assert [r["nfe"] for r in report["rows"]][:2] == [1, 2]
    assert report["noise_floor"] > 0
    assert 0.5 < report["floor_recall"] <= 1 and all(0 <= r["precision"] <= 1 for r in report["rows"])
    assert "noise floor" in capsys.readouterr().out


def test_eval_of_a_file_run_caps_n_at_two_disjoint_heldout_halves(tmp_path, capsys):
    # n equal to the held-out count used to give a floor of 0 (both floor draws were the same rows)
    points = tmp_path / "pts.npy"
    np.save(points, np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["train", "--data", str(points), "--out", str(out), *TINY]) == 0
    assert main(["eval", str(out), "--n", "40", "--solver", "euler", "--steps", "2"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == 20 and report["noise_floor"] > 0 and "not 40" in report["note"]
    assert "n = 20, not 40" in capsys.readouterr().out


def test_data_command_exports_samples(tmp_path):
    out = tmp_path / "x.csv"
    assert main(["data", "checkerboard", "--n", "20", "--out", str(out)]) == 0
    assert np.loadtxt(out, delimiter=",", comments="#", ndmin=2).shape[1] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "mooons", "--out", "X"], "unknown data 'mooons'"),
        (["train", "--method", "ddpm", "--out", "X"], "unknown method 'ddpm'"),
        (["train", "--coupling", "best", "--out", "X"], "unknown coupling 'best'"),
        (["train", "--set", "train.stepz=3", "--out", "X"], "unknown config key"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_asking_for_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, on any machine
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "device 'cuda'" in err and "no CUDA GPU" in err and len(err.splitlines()) == 1


def test_unknown_solver_is_named(run_dir, capsys):
    assert main(["sample", str(run_dir), "--solver", "rk45", "--out", "/tmp/never.npy"]) == 2
    assert "unknown solver 'rk45'" in capsys.readouterr().err


def test_malformed_data_file_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,oops\n")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "bad.csv" in capsys.readouterr().err


def test_missing_run_is_named(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_plain_train_uses_each_methods_defaults_and_a_16d_toy_set_trains_samples_and_evaluates(tmp_path):
    # Nothing but --data/--method/--out (and a tiny network): coupling and time features come from the
    # method's defaults (training.config.METHOD_DEFAULTS) and config.json records them; moons16d is 16-D.
    tiny = [a for a in TINY if a not in ("--steps", "30")]
    for method, coupling, features in (("fm", "independent", "raw"), ("meanflow", "ot", "raw")):
        out = tmp_path / method
        assert main(["train", "--method", method, "--data", "moons16d", "--out", str(out), "--steps", "20",
                     *tiny]) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert (cfg["data"]["coupling"], cfg["model"]["time_features"]) == (coupling, features)
        assert main(["sample", str(out), "--n", "30", "--out", str(tmp_path / f"{method}.npy")]) == 0
        assert np.load(tmp_path / f"{method}.npy").shape == (30, 16)
        assert main(["eval", str(out), "--n", "100", "--steps", "1"]) == 0


def test_config_command_prints_the_resolved_per_method_defaults(capsys):
    assert main(["config", "--method", "meanflow", "--data", "moons", "--set", "optim.lr=3e-4"]) == 0
    text = capsys.readouterr().out
    assert 'coupling = "ot"' in text and "lr = 0.0003" in text and "steps = 11000" in text
    assert main(["config", "--method", "fm", "--data", "digits", "--unresolved"]) == 0
    assert 'coupling = "auto"' in capsys.readouterr().out


def test_eval_writes_its_table_as_csv_and_markdown_beside_the_json_with_the_floor_row(run_dir, tmp_path, capsys):
    import csv

    out = tmp_path / "e.json"
    assert main(["eval", str(run_dir), "--n", "100", "--solver", "euler", "--steps", "1,4", "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads(out.read_text())
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["solver"] for r in rows] == ["held-out", "euler", "euler"]
    assert float(rows[0]["W2 (data units)"]) == report["noise_floor"] and float(rows[0]["W2/floor"]) == 1.0
    assert [float(r["W2/floor"]) for r in rows[1:]] == [r["w2_ratio"] for r in report["rows"]]
    markdown = out.with_suffix(".md").read_text()
    assert "| held-out |" in markdown and "two independent held-out draws of equal n" in markdown
    printed = capsys.readouterr().out.splitlines()
    header = next(ln for ln in printed if ln.startswith("solver"))
    body = [ln for ln in printed if ln.startswith(("held-out", "euler"))]
    assert len(body) == 3 and all(len(ln) == len(header) for ln in body)  # aligned: every row ends with its header
    assert any("a perfect sampler scores about 1x" in ln for ln in printed)


def test_long_commands_report_progress_as_plain_lines_off_a_terminal(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STRAIGHTFLOW_PROGRESS_EVERY", "0")  # a line at every update
    assert main(["sample", str(run_dir), "--n", "20", "--solver", "midpoint", "--steps", "3",
                 "--out", str(tmp_path / "s.npy")]) == 0
    assert main(["eval", str(run_dir), "--n", "50", "--solver", "euler", "--steps", "2",
                 "--out", str(tmp_path / "e.json")]) == 0
    assert main(["likelihood", str(run_dir), "--n", "20", "--batch-size", "10", "--solver", "euler",
                 "--steps", "2", "--out", str(tmp_path / "nll.json")]) == 0
    assert main(["train", "--data", "moons", "--out", str(tmp_path / "run"), "--steps", "4", "--no-plots",
                 "--set", "model.width=8", "--set", "train.batch_size=16"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    for last in ("sample: 6/6 NFE", "eval: 2/2 rows", "likelihood: 2/2 batches", "train: 4/4 step"):
        assert any(ln.startswith(last + " (") for ln in lines), last
    assert any(ln.startswith("sample: 1/6 NFE") for ln in lines)  # reported while running, not only at the end


def test_the_command_line_asks_openmp_for_passive_waiting_before_torch_loads_unless_the_user_chose():
    import os
    import subprocess
    import sys

    code = ("import sys; import straightflow.cli.main as m, os; "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "PASSIVE"
    # the policy is set in main.py's first statements, before its imports pull torch in
    src = (Path(__file__).resolve().parents[2] / "src/straightflow/cli/main.py").read_text()
    assert src.index('setdefault("OMP_WAIT_POLICY"') < src.index("from straightflow")
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "ACTIVE"
