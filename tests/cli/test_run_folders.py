"""Run folders and inputs from the command line: argument errors caught before any work, leftovers of kills
cleared, a torn log line or broken metadata that do not block or fool, Ctrl-C and warnings as one line."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from straightflow.cli.main import main
from straightflow.training.checkpoint import CHECKPOINT, read_meta

TINY = ["--no-progress", "--no-plots", "--set", "model.width=16", "--set", "model.depth=1", "--set",
        "train.batch_size=32", "--set", "train.log_every=10", "--set", "train.ckpt_every=20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("folders") / "run"
    assert main(["train", "--data", "moons", "--steps", "40", "--out", str(out), *TINY]) == 0
    return out


def _one_line_error(capsys, argv, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"straightflow {argv[0]}: error: "), err
    return err


# --------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("steps", ["0", "-3"])
def test_train_steps_below_one_are_refused_before_any_work(tmp_path, capsys, steps):
    err = _one_line_error(capsys, ["train", "--data", "moons", "--steps", steps, "--out", str(tmp_path / "r"), *TINY])
    assert f"--steps must be >= 1, got {steps}" in err and not (tmp_path / "r").exists()


def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    err = _one_line_error(capsys, ["train", "--data", "moons", "--steps", "20", "--out", str(tmp_path / "file" / "r"),
                                   *TINY])
    assert "cannot create the run folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    err = _one_line_error(capsys, ["train", "--data", "moons", "--steps", "20", "--out", str(tmp_path / "ro"), *TINY])
    assert "cannot write to the run folder" in err


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_guidance_on_a_run_without_classes_is_an_error_not_ignored(run_dir, tmp_path, capsys, command):
    out = ["--out", str(tmp_path / ("s.npy" if command == "sample" else "e.json"))]
    err = _one_line_error(capsys, [command, str(run_dir), "--n", "20", "--guidance", "2", "--no-progress", *out])
    assert "guidance 2 needs a conditional run" in err


def test_reflow_guidance_on_a_run_without_classes_is_an_error(run_dir, tmp_path, capsys):
    err = _one_line_error(capsys, ["reflow", str(run_dir), "--pairs", "20", "--guidance", "2", "--out",
                                   str(tmp_path / "r"), *TINY])
    assert "--guidance 2 needs a conditional run" in err and not (tmp_path / "r" / "pairs").exists()


@pytest.mark.parametrize("command", ["reflow", "distill"])
def test_bad_training_settings_of_reflow_and_distill_fail_before_the_pairs(run_dir, tmp_path, capsys, command):
    err = _one_line_error(capsys, [command, str(run_dir), "--pairs", "20", "--out", str(tmp_path / "r"), *TINY,
                                   "--set", "train.batch_size=-1"])
    assert "train.batch_size must be >= 0" in err and not (tmp_path / "r").exists()


def test_sample_out_must_name_the_npy_file_it_writes(run_dir, tmp_path, capsys):
    err = _one_line_error(capsys, ["sample", str(run_dir), "--n", "5", "--out", str(tmp_path / "x")])
    assert "--out must name a .npy file" in err and not list(tmp_path.iterdir())
    assert main(["sample", str(run_dir), "--n", "5", "--out", str(tmp_path / "x.NPY")]) == 0
    assert np.load(tmp_path / "x.NPY").shape == (5, 2) and not (tmp_path / "x.NPY.npy").exists()


def test_sample_into_an_unwritable_place_is_refused_before_sampling(run_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    err = _one_line_error(capsys, ["sample", str(run_dir), "--n", "5", "--out", str(tmp_path / "file" / "s.npy")])
    assert "cannot create its folder" in err


# --------------------------------------------------------------------------------------------- leftovers
def _copy(run_dir, to):
    to.mkdir()
    for name in (CHECKPOINT, "config.json", "metrics.jsonl"):
        (to / name).write_bytes((run_dir / name).read_bytes())
    return to


def test_temporary_checkpoints_left_by_a_kill_are_removed_at_the_next_start(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path / "r")
    (run / f".{CHECKPOINT}.tmp-12345").write_bytes(b"half a checkpoint")
    assert main(["train", "--data", "moons", "--steps", "60", "--out", str(run), "--resume", *TINY]) == 0
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT, "config.json", "metrics.jsonl"]


def test_a_torn_last_line_of_the_metrics_does_not_block_resume(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path / "r")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 50, "lo')  # the kill came mid-write
    assert main(["train", "--data", "moons", "--steps", "60", "--out", str(run), "--resume", *TINY]) == 0
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40, 50, 60]


def test_broken_json_in_a_checkpoints_metadata_names_the_file(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "r").mkdir()
    save_file({"a": torch.zeros(1)}, str(tmp_path / "r" / CHECKPOINT), metadata={"straightflow": '{"config": {'})
    err = _one_line_error(capsys, ["sample", str(tmp_path / "r"), "--n", "5", "--out", str(tmp_path / "s.npy")])
    assert f"checkpoint {tmp_path / 'r' / CHECKPOINT} has broken JSON" in err


def _as_from_a_shell() -> None:
    """In the child before exec: SIGINT handled by default and not blocked, as a shell starts a command.

    A child inherits an ignored or blocked SIGINT from its parent (a test worker may run with either), and
    Python then never raises KeyboardInterrupt: the run would train on, which is not what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_prints_one_line_naming_the_last_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "straightflow", "train", "--data", "moons", "--steps", "100000",
                             "--out", str(out), *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_as_from_a_shell)
    deadline = time.monotonic() + 60
    while not (out / CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.count("\n") == 1, err
    step = read_meta(out / CHECKPOINT)["step"]
    assert err == f"straightflow train: interrupted; the last checkpoint is {out / CHECKPOINT} (step {step}): " \
                  "continue with --resume\n"
    assert not (out / ".lock").exists()


# --------------------------------------------------------------------------------------------- data
def test_a_pandas_csv_trains_on_its_features_with_a_one_line_warning(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(200, 2))
    (tmp_path / "df.csv").write_text(",x,y\n" + "".join(f"{i},{a},{b}\n" for i, (a, b) in enumerate(rows)))
    assert main(["train", "--data", str(tmp_path / "df.csv"), "--steps", "5", "--out", str(tmp_path / "r"),
                 *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("straightflow train: warning: the first column of")
    assert read_meta(tmp_path / "r" / CHECKPOINT)["dim"] == 2  # the index was not a third feature


def test_standardisation_is_switchable_from_the_command_line(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32))
    for mode, stored in (("off", False), ("auto", True)):
        out = tmp_path / mode
        assert main(["train", "--data", str(tmp_path / "x.npy"), "--standardize", mode, "--steps", "5", "--out",
                     str(out), *TINY]) == 0
        assert ("data_transform" in read_meta(out / CHECKPOINT)) is stored
