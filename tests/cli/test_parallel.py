"""Demos train their runs side by side, one `straightflow train` process each (cli/parallel.py)."""

import json

import pytest

from straightflow.cli.parallel import parallel_slots, timing_line, train_argv, train_runs

TINY = {"model.width": 16, "model.depth": 1, "train.batch_size": 32, "train.log_every": 2, "data.prefetch": False}


def test_train_argv_spells_overrides_as_set_flags_with_lowercase_booleans_and_resume():
    argv = train_argv("meanflow", "runs/x", 5, {"data.conditional": True, "optim.lr": 0.002}, True, False)
    assert argv[:6] == ["--method", "meanflow", "--out", "runs/x", "--steps", "5"]
    assert "data.conditional=true" in argv and "optim.lr=0.002" in argv
    assert argv[-2:] == ["--resume", "--no-progress"]


def test_one_run_per_core_on_a_cpu_and_one_at_a_time_on_an_accelerator():
    assert parallel_slots(2, "cuda") == 1 and parallel_slots(1, "cpu") == 1
    assert 1 <= parallel_slots(5, "cpu") <= 5


def test_runs_side_by_side_each_finish_their_steps_and_report_their_time(tmp_path, capsys):
    jobs = {name: train_argv(name, str(tmp_path / name), 4, {"data.data": "moons", **TINY}, False, False)
            for name in ("fm", "meanflow")}
    seconds = train_runs(jobs, slots=2)
    assert set(seconds) == {"fm", "meanflow"} and all(s > 0 for s in seconds.values())
    for name in jobs:
        last = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["step"] == 4
    out = capsys.readouterr().out
    assert "[fm] " in out and "[meanflow] " in out  # each child's lines are relayed behind its name
    assert timing_line({"fm": 4}, {"fm": 90.0}, 2, "cpu") == "training (side by side, on cpu): fm 4 steps in 1.5 min"


def test_a_failed_run_is_one_error_naming_it_and_its_last_line(tmp_path):
    jobs = {"good": train_argv("fm", str(tmp_path / "good"), 2, {"data.data": "moons", **TINY}, False, False),
            "bad": train_argv("fm", str(tmp_path / "bad"), 2, {"data.data": "no-such-set"}, False, False)}
    with pytest.raises(RuntimeError, match=r"training failed: bad \(exit [12]: .*no-such-set"):
        train_runs(jobs, slots=2)
    assert (tmp_path / "good" / "checkpoint.safetensors").exists()  # the other run still finished
