"""torchrun + DDP on the CPU (gloo, 2 processes): gradients, sharding and checkpoints match one process.

Every run here is pinned to the CPU (train.device / --device cpu), so a visible GPU changes nothing.
"""

import os
import subprocess
import sys

import pytest
import torch

from straightflow.cli.main import main
from straightflow.paths.coupling import CoupledBatch
from straightflow.rng import step_generator
from straightflow.training.checkpoint import load_checkpoint
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.distributed import DistInfo, shard_range
from straightflow.training.trainer import CHECKPOINT, METHOD_STREAM, Trainer, lr_at

ARGS = {"model.width": "32", "model.depth": "2", "train.batch_size": "64", "train.log_every": "1",
        "train.device": "cpu", "optim.warmup_steps": "1", "data.data": "moons"}


def torchrun(out, steps: int, extra: dict[str, str], nproc: int = 2) -> None:
    sets = [a for k, v in {**ARGS, **extra}.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "straightflow", "train", "--steps", str(steps), "--out", str(out), "--no-progress",
           "--no-plots", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # A rare abort of a gloo rank in C++ teardown on a loaded machine (seen about once in 100 runs, not
        # reproduced in 27 runs idle or beside a busy process); the command line now skips that teardown
        # (cli/main.py). Run once more from scratch rather than fail on it; any other failure fails.
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def one_process_reference(cfg: RunConfig, tmp_path, world: int = 2) -> Trainer:
    """One step by a single process on the concatenated batch, with each slice's own time stream."""
    trainer = Trainer(cfg, tmp_path / "ref", progress=False)
    full = trainer.make_batch(0)
    losses = []
    for rank in range(world):
        a, b = shard_range(full.x1.shape[0], DistInfo(rank, world))
        part = CoupledBatch(full.x0[a:b], full.x1[a:b], None)
        out = trainer.method.loss(trainer.model, part, step_generator(cfg.train.seed, 0, METHOD_STREAM, rank))
        losses.append(out.loss.mean())
    loss = torch.stack(losses).mean()
    for group in trainer.opt.param_groups:
        o = trainer.cfg.optim  # resolved: optim.lr 0 means the method's default
        group["lr"] = lr_at(0, o.lr, o.warmup_steps, trainer.cfg.train.steps, o.lr_schedule)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.optim.grad_clip)
    trainer.opt.step()
    return trainer


# MeanFlow rows pin independent pairs (its vector default is OT, covered by the fm row): they test the JVP modes.
@pytest.mark.parametrize("extra", [{"data.coupling": "independent"}, {"data.coupling": "ot"},
                                   {"method.name": "meanflow", "method.jvp": "tangent", "data.coupling": "independent"},
                                   {"method.name": "meanflow", "method.jvp": "func_nograd",
                                    "data.coupling": "independent"}])
def test_two_ranks_one_step_equals_one_process_on_concatenated_batch(tmp_path, extra):
    torchrun(tmp_path / "ddp", 1, extra)
    tensors, meta = load_checkpoint(tmp_path / "ddp" / CHECKPOINT)
    assert meta["step"] == 1
    cfg = apply_overrides(RunConfig(), {**ARGS, **extra, "train.steps": 1})
    ref = one_process_reference(cfg, tmp_path)
    for name, value in ref.model.state_dict().items():
        torch.testing.assert_close(tensors[f"model.{name}"], value, rtol=0, atol=1e-6, msg=name)


def test_checkpoint_from_two_ranks_resumes_in_one(tmp_path):
    torchrun(tmp_path / "run", 2, {})
    cfg = apply_overrides(RunConfig(), {**ARGS, "train.steps": 4})
    trainer = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert trainer.step == 2
    trainer.fit()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)[1]["step"] == 4


def test_world_size_must_divide_the_batch(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "straightflow",
           "train", "--steps", "1", "--out", str(tmp_path / "x"), "--batch-size", "63", "--no-progress",
           "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "batch size 63 is not divisible by the world size 2" in proc.stderr
    assert not (tmp_path / "x" / CHECKPOINT).exists()


def test_shards_cover_every_item_once():
    for n in (7, 8, 64):
        spans = [shard_range(n, DistInfo(r, 3)) for r in range(3)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_reflow_pairs_and_likelihoods_from_two_ranks_equal_one_rank(tmp_path):
    """Pair shards split by rank, and likelihood batches split by rank, merge into the 1-rank result."""
    import json

    from straightflow.data.pairs import load_pairs
    from straightflow.density import run_log_likelihood
    from straightflow.pipelines.pairs import reflow_pairs_from_run
    from straightflow.runs import load_run

    cfg = apply_overrides(RunConfig(), {**ARGS, "train.steps": 20})
    Trainer(cfg, tmp_path / "base", progress=False).fit()
    common = ["--solver", "euler", "--solver-steps", "4", "--shard-size", "16", "--steps", "1", "--no-progress",
              "--no-plots", "--set", "train.batch_size=32", "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "straightflow",
           "reflow", str(tmp_path / "base"), "--pairs", "72", "--out", str(tmp_path / "rf"), *common]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = load_run(tmp_path / "base", device="cpu")
    single = reflow_pairs_from_run(run, 72, tmp_path / "single", solver="euler", steps=4, shard_size=16)
    two, one = load_pairs(tmp_path / "rf" / "pairs"), load_pairs(single)
    assert two[0].shape[0] == 72
    torch.testing.assert_close(two[0], one[0], rtol=0, atol=0)
    torch.testing.assert_close(two[1], one[1], rtol=0, atol=1e-6)

    data = tmp_path / "points.npy"
    import numpy as np

    np.save(data, torch.randn(50, 2).numpy())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "straightflow",
           "likelihood", str(tmp_path / "base"), "--data", str(data), "--solver", "rk4", "--steps", "8",
           "--batch-size", "16", "--out", str(tmp_path / "nll.json"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = run_log_likelihood(run, torch.from_numpy(np.load(data)), batch_size=16, solver="rk4", steps=8)
    report = json.loads((tmp_path / "nll.json").read_text())
    assert report["nll"] == pytest.approx(float(-ref.log_prob.mean()), abs=1e-6)


@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_processes_than_gpus_is_a_one_line_error_on_every_rank_before_joining(tmp_path, monkeypatch, capsys,
                                                                                  local_rank):
    # torchrun --nproc-per-node 2 on a machine with one GPU, as rank `local_rank`: every rank refuses alike.
    def never(*args, **kwargs):
        raise AssertionError("reached CUDA or the rendezvous before checking the GPU count")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", never)
    monkeypatch.setattr(torch.distributed, "init_process_group", never)
    for key, value in {"RANK": local_rank, "WORLD_SIZE": 2, "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": 2}.items():
        monkeypatch.setenv(key, str(value))
    assert main(["train", "--data", "moons", "--out", str(tmp_path / "x"), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in ("2 processes", f"LOCAL_RANK={local_rank}", "torch.cuda.device_count() is 1", "--nproc-per-node 1",
                 "train.device=cpu"):
        assert part in err, err
