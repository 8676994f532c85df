"""Fault injection: kill -9 at random moments of train, reflow and distill (the folder always loads and the
resumed run is bit-identical to an unbroken one), ENOSPC and EIO in checkpoint and shard writes (the previous
file survives, one line on stderr), and concurrent writers (one wins, the other gets one line)."""

import errno
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from straightflow.cli.main import main
from straightflow.data.pairs import shard_path
from straightflow.runs import load_run
from straightflow.training import checkpoint as ckpt
from straightflow.training.checkpoint import CHECKPOINT, load_checkpoint, read_meta
from straightflow.training.lock import LOCK

TINY = ["--no-progress", "--no-plots", "--set", "model.width=16", "--set", "model.depth=1", "--set",
        "train.batch_size=32", "--set", "train.log_every=10", "--set", "train.ckpt_every=20", "--set",
        "data.prefetch=false", "--device", "cpu"]
PAIRS = ["--solver", "euler", "--solver-steps", "8", "--shard-size", "40"]
SLOW_PAIRS = ["--solver", "euler", "--solver-steps", "200", "--shard-size", "40"]  # ~20 ms a shard: kills land in them
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "straightflow", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def _kill_at_random(args: list[str], started: Path, rng: random.Random, within: float) -> None:
    """Run the command and SIGKILL it `within * U(0, 1)` seconds after `started` appears (or when it ends)."""
    proc = _start(args)
    deadline = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, within))
    proc.kill()
    proc.communicate(timeout=60)


def _assert_loads(folder: Path) -> None:
    """The killed writer's folder: its lock left behind (stale now), every file in it readable."""
    assert (folder / LOCK).exists(), "the writer did not hold the folder's lock"
    if (folder / CHECKPOINT).exists():
        load_run(folder, device="cpu")
    if (folder / "config.json").exists():
        json.loads((folder / "config.json").read_text())


def _same_weights(a: Path, b: Path) -> None:
    ta, ma = load_checkpoint(a / CHECKPOINT)
    tb, mb = load_checkpoint(b / CHECKPOINT)
    assert ma["step"] == mb["step"] and sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta), "the resumed run differs from the unbroken one"


def _no_leftovers(folder: Path) -> None:
    assert not list(folder.rglob(".*.tmp-*")) and not (folder / LOCK).exists()


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    assert main(["train", "--data", "moons", "--steps", "40", "--out", str(root / "parent"), *TINY]) == 0
    return root / "parent"


# --------------------------------------------------------------------------------------------- kill -9
@pytest.mark.parametrize("attempt, started", [(0, "metrics.jsonl"), (1, CHECKPOINT)])
def test_train_killed_at_a_random_moment_loads_and_resumes_bit_identically(tmp_path, capsys, attempt, started):
    args = ["train", "--data", "moons", "--steps", "600", *TINY]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    broken = tmp_path / "broken"
    _kill_at_random([*args, "--out", str(broken)], broken / started, random.Random(attempt), 0.3)
    _assert_loads(broken)
    resume = ["--resume"] if (broken / CHECKPOINT).exists() else []
    capsys.readouterr()
    assert main([*args, "--out", str(broken), *resume]) == 0
    assert "taking over the stale lock" in capsys.readouterr().err
    _same_weights(tmp_path / "whole", broken)
    steps = [json.loads(ln)["step"] for ln in (broken / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 601, 10))  # no torn, duplicated or missing log lines
    _no_leftovers(broken)


@pytest.mark.parametrize("command", ["reflow", "distill"])
def test_reflow_and_distill_killed_at_a_random_moment_resume_bit_identically(tmp_path, parent, command):
    args = [command, str(parent), "--pairs", "1000", "--steps", "200", *SLOW_PAIRS, *TINY]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    broken = tmp_path / "broken"
    # one kill while the pair shards are written, one while the new run trains on them
    for attempt, started in enumerate([shard_path(broken / "pairs", 3), broken / "metrics.jsonl"]):
        _kill_at_random([*args, "--out", str(broken), "--resume"], started, random.Random(10 + attempt), 0.2)
        _assert_loads(broken)
        assert not (broken / CHECKPOINT).exists() or read_meta(broken / CHECKPOINT)["step"] < 200
    assert main([*args, "--out", str(broken), "--resume"]) == 0
    _same_weights(tmp_path / "whole", broken)
    _no_leftovers(broken)


# --------------------------------------------------------------------------------------------- ENOSPC / EIO
def _failing_save(monkeypatch, code: int, after: int) -> None:
    """Checkpoint and shard writes fail with `code` once `after` writes have succeeded, half-way through."""
    real, calls = ckpt.save_file, []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) > after:
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(code, os.strerror(code))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_full_disk_or_io_error_in_a_checkpoint_keeps_the_previous_one_with_one_line(tmp_path, monkeypatch,
                                                                                         capsys, code):
    _failing_save(monkeypatch, code, after=2)
    out = tmp_path / "run"
    assert main(["train", "--data", "moons", "--steps", "100", "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and os.strerror(code) in err and "Traceback" not in err
    assert f"the last checkpoint is {out / CHECKPOINT} (step 40)" in err
    assert read_meta(out / CHECKPOINT)["step"] == 40
    load_run(out, device="cpu")
    _no_leftovers(out)
    monkeypatch.undo()
    assert main(["train", "--data", "moons", "--steps", "100", "--out", str(out), "--resume", *TINY]) == 0


def test_a_full_disk_while_writing_pair_shards_keeps_the_shards_written_and_resumes(tmp_path, parent, monkeypatch,
                                                                                     capsys):
    args = ["reflow", str(parent), "--pairs", "120", "--steps", "10", "--out", str(tmp_path / "r"), *PAIRS, *TINY]
    _failing_save(monkeypatch, errno.ENOSPC, after=1)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "pairs-00001" in err
    assert read_meta(shard_path(tmp_path / "r" / "pairs", 0), kind="pairs shard")["shard"] == 0
    assert not shard_path(tmp_path / "r" / "pairs", 1).exists()
    _no_leftovers(tmp_path / "r")
    monkeypatch.undo()
    assert main(args) == 0


# --------------------------------------------------------------------------------------------- two writers
def test_two_concurrent_trainings_into_one_folder_one_wins_the_other_gets_one_line(tmp_path):
    args = ["train", "--data", "moons", "--steps", "200", "--out", str(tmp_path / "r"), *TINY]
    procs = [_start(args), _start(args)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2]
    loser = next(err for code, err in results if code == 2)
    # refused by the lock while the winner trains, or (if it came late) by the winner's checkpoint
    assert loser.count("\n") == 1 and ("is locked by pid" in loser or "already holds a run" in loser)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 201, 10))  # one run's losses, not two interleaved
    _no_leftovers(tmp_path / "r")


@pytest.mark.parametrize("command", ["train", "reflow", "distill"])
def test_every_writer_refuses_a_folder_another_process_holds(tmp_path, parent, capsys, command):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from straightflow.training.lock import RunLock\n"
         "with RunLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(tmp_path / "r")],
        stdout=subprocess.PIPE, text=True, env=ENV)
    source = ["--data", "moons"] if command == "train" else [str(parent), "--pairs", "40", *PAIRS]
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([command, *source, "--steps", "10", "--out", str(tmp_path / "r"), *TINY]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is locked by pid" in err
    assert not (tmp_path / "r" / CHECKPOINT).exists() and not (tmp_path / "r" / "pairs").exists()
