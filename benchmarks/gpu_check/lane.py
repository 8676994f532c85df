"""Section 3 of the GPU check, the CUDA correctness lane: the CLI's train, sample and likelihood commands and
torchrun, as subprocesses in parallel (while section 1 compiles), each row pass/FAIL with the error's last line,
never a crash; and the lane's worker (digit classifier, class accuracy of the samples), run as
`gpu.py --worker`."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from gpu_check.context import Ctx, last_line

GPU_SCRIPT = Path(__file__).resolve().parents[1] / "gpu.py"  # the entry point: its --worker runs worker()


def run_cmd(ctx: Ctx, name: str, cmd: list[str], env: dict | None = None, cap: float = 150) -> tuple:
    """Run a subprocess (own process group, so the watchdog can stop torchrun's children): (rc, output, s);
    rc None when there was no time left to start it."""
    timeout = min(cap, ctx.hard_left() - 10)
    if timeout < 5:
        return None, "skipped: no time left before --hard-limit-s", 0.0
    ctx.log(f"$ {' '.join(cmd)}")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    ctx.procs.add(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        out += f"\nTimeoutError: stopped after {timeout:.0f} s"
    finally:
        ctx.procs.discard(p)
    seconds = time.perf_counter() - t0
    with ctx.lock, open(ctx.paths()["log"], "a") as f:  # the end of the output: where the errors are
        f.write(f"----- {name}: rc {p.returncode}, {seconds:.1f} s\n{out[-20000:]}\n-----\n")
    return p.returncode, out, seconds


def lane_row(ctx: Ctx, name: str) -> dict:
    with ctx.lock:
        row = {"check": name, "status": "pending", "seconds": None, "details": ""}
        ctx.rows["correct"].append(row)
    return row


def _finish(ctx: Ctx, row: dict, rc: int, out: str, seconds: float, check=None) -> bool:
    """Fill a lane row from a subprocess result and an optional check (a function returning details or raising)."""
    row["seconds"] = round(seconds, 1)
    if rc != 0:
        row["status"] = out if rc is None else "FAIL: " + last_line(out)
        ctx.save()
        return False
    try:
        row["details"] = check() if check else ""
        row["status"] = "pass"
    except Exception as e:
        row["status"] = f"FAIL: {last_line(e)}"
    ctx.save()
    return row["status"] == "pass"


def _train_check(run: Path):
    def check() -> str:
        records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]
        if not (run / "checkpoint.safetensors").is_file() or not records:
            raise RuntimeError(f"no checkpoint or metrics in {run}")
        if not math.isfinite(records[-1]["loss"]):
            raise RuntimeError(f"last logged loss is {records[-1]['loss']}")
        return f"{records[-1]['step']} steps, last loss {records[-1]['loss']:.4f}"
    return check


def _sample_check(path: Path, n: int):
    def check() -> str:
        import numpy as np

        x = np.load(path)
        if x.shape != (n, 1, 8, 8):
            raise RuntimeError(f"samples have shape {x.shape}, expected {(n, 1, 8, 8)}")
        if not np.isfinite(x).all():
            raise RuntimeError("samples are not finite")
        return f"{x.shape}, finite, range [{x.min():.2f}, {x.max():.2f}]"
    return check


def start_lane(ctx: Ctx) -> None:
    """Submit the lane's chains to a thread pool; each chain runs its subprocesses in order."""
    a, py, lane = ctx.args, sys.executable, ctx.work / "lane"
    lane.mkdir(parents=True, exist_ok=True)
    dev = [] if ctx.cuda else ["--device", "cpu"]  # CUDA: the CLI's default, device auto
    steps = str(a.lane_steps)
    n = 20 if a.dry_run else 100
    tiny = ["--batch-size", "16", "--no-plots"] if a.dry_run else []
    fast = [] if a.dry_run else ["--compile"]  # no inductor on the CPU in a dry run
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "straightflow"]
    nccl = {"NCCL_DEBUG": "INFO"} if ctx.cuda else {}
    env = {"OMP_NUM_THREADS": "1"} if a.dry_run else {}
    compiled = "compile, " if fast else ""
    rows = {
        "fm": lane_row(ctx, f"digits FM, class-conditional, {a.precision}, {compiled}{steps} steps (CLI train)"),
        "fm_sample": lane_row(ctx, "digits FM: `sample --class 3 --guidance 2`, Euler 8 (CLI)"),
        "mf": lane_row(ctx, f"digits MeanFlow tangent, class-conditional, omega 1.5, {a.precision}, {compiled}"
                            f"{steps} steps"),
        "mf_sample": lane_row(ctx, "digits MeanFlow: `sample --class 3`, 1 NFE (CLI)"),
        "acc_fm": lane_row(ctx, "digits FM class accuracy, guidance 2, Euler 8, balanced labels"),
        "acc_mf": lane_row(ctx, "digits MeanFlow class accuracy, 1 NFE, balanced labels"),
        "ddp": lane_row(ctx, f"torchrun --nproc-per-node 1 train moons FM, {'nccl' if ctx.cuda else 'gloo'}"),
        "nll": lane_row(ctx, "`straightflow likelihood` of that run (dopri5, exact divergence)"),
        "ddp_mf": lane_row(ctx, f"torchrun train digits MeanFlow class-conditional {a.precision}, "
                                f"{'nccl' if ctx.cuda else 'gloo'}"),
    }
    digits = [py, "-m", "straightflow", "train", "--data", "digits", "--conditional", "--precision", a.precision,
              "--steps", steps, "--no-progress", *fast, *tiny, *dev]

    def chain_model(key: str) -> bool:
        run = lane / key
        extra = ["--method", "fm"] if key == "fm" else ["--method", "meanflow", "--set", "method.omega=1.5"]
        ok = _finish(ctx, rows[key], *run_cmd(ctx, key, [*digits, *extra, "--out", str(run)], env), _train_check(run))
        if not ok:
            rows[f"{key}_sample"]["status"] = "skipped: its training did not pass"
            return False
        guide = ["--guidance", "2", "--solver", "euler", "--steps", "8"] if key == "fm" else ["--steps", "1"]
        out = run / "three.npy"
        cmd = [py, "-m", "straightflow", "sample", str(run), "--class", "3", "--n", str(n), *guide, "--out", str(out),
               *dev]
        _finish(ctx, rows[f"{key}_sample"], *run_cmd(ctx, f"{key} sample", cmd, env), _sample_check(out, n))
        return True

    def chain_ddp() -> None:
        run = lane / "moons"
        cmd = [*torchrun, "train", "--data", "moons", "--steps", steps, "--out", str(run), "--no-progress",
               "--no-plots", *dev]
        rc, out, s = run_cmd(ctx, "torchrun moons", cmd, {**env, **nccl})
        base = _train_check(run)
        used = (lambda: base() + (", NCCL INFO in the log" if "NCCL INFO" in out else ", no NCCL INFO line")) \
            if ctx.cuda else base
        if not _finish(ctx, rows["ddp"], rc, out, s, used):
            rows["nll"]["status"] = "skipped: its training did not pass"
            return
        nll = run / "nll.json"
        cmd = [py, "-m", "straightflow", "likelihood", str(run), "--data", "moons", "--n", str(10 * n), "--out",
               str(nll), *dev]

        def check() -> str:
            r = json.loads(nll.read_text())
            if not math.isfinite(r["nll"]):
                raise RuntimeError(f"NLL is {r['nll']}")
            return f"NLL {r['nll']:.3f} +- {r['nll_stderr']:.3f} nats over {r['n']} points, NFE {r['nfe']:.0f}"
        _finish(ctx, rows["nll"], *run_cmd(ctx, "likelihood", cmd, env), check)

    def chain_ddp_mf() -> None:
        run = lane / "ddp-digits-mf"
        cmd = [*torchrun, "train", "--method", "meanflow", "--data", "digits", "--conditional", "--precision",
               a.precision, "--steps", str(max(2, a.lane_steps // 10)), "--out", str(run), "--no-progress",
               "--no-plots", *(["--batch-size", "16"] if a.dry_run else []), *dev]
        result = run_cmd(ctx, "torchrun digits meanflow", cmd, {**env, **nccl})
        _finish(ctx, rows["ddp_mf"], *result, _train_check(run))

    worker_cmd = [py, str(GPU_SCRIPT), "--worker", "--work", str(lane), *(["--dry-run"] if a.dry_run else []),
              *(["--device", "cpu"] if not ctx.cuda else [])]

    def featnet() -> tuple:  # the classifier is trained (and cached) while the models train
        return run_cmd(ctx, "feature network", [*worker_cmd, "--featnet"], env)

    def guarded(fn, *args):
        """A chain's unexpected error fails its pending rows instead of escaping."""
        try:
            return fn(*args)
        except Exception as e:
            ctx.log(traceback.format_exc())
            for row in rows.values():
                if row["status"] == "pending":
                    row["status"] = f"FAIL: benchmark error in the lane: {last_line(e)}"
            ctx.save()
            return False if fn is chain_model else (1, last_line(e), 0.0)

    pool = ThreadPoolExecutor(max_workers=6)
    f_fm, f_mf = pool.submit(guarded, chain_model, "fm"), pool.submit(guarded, chain_model, "mf")
    f_net = pool.submit(guarded, featnet)

    def chain_accuracy() -> None:
        trained = {k: f.result() for k, f in (("fm", f_fm), ("mf", f_mf))}
        net_rc, net_out, _ = f_net.result()
        keys = [k for k, ok in trained.items() if ok]
        for k, ok in trained.items():
            if not ok:
                rows[f"acc_{k}"]["status"] = "skipped: its training did not pass"
        if not keys:
            return
        if net_rc != 0:
            for k in keys:
                rows[f"acc_{k}"]["status"] = "FAIL: feature network: " + last_line(net_out)
            ctx.save()
            return
        rc, out, s = run_cmd(ctx, "accuracy", [*worker_cmd, "--accuracy", ",".join(keys)], env)
        result = json.loads((lane / "accuracy.json").read_text()) if rc == 0 else {}
        for k in keys:
            row, r = rows[f"acc_{k}"], result.get(k, {})
            row["seconds"] = round(s, 1)
            if rc is None:
                row["status"] = out
            elif rc != 0 or "error" in r:
                row["status"] = "FAIL: " + (r.get("error") or last_line(out))
            else:
                row["details"] = (f"class accuracy {r['accuracy']:.3f} (chance 0.1) over {r['n']} samples, "
                                  f"finite {r['finite']}, NFE {r['nfe']:g}; the classifier scores "
                                  f"{r['classifier_accuracy']:.3f} on test digits")
                low = (not a.dry_run) and r["accuracy"] < a.min_accuracy
                row["status"] = "pass" if r["finite"] and not low else \
                    f"FAIL: {'samples not finite' if not r['finite'] else f'accuracy below {a.min_accuracy}'}"
        ctx.save()

    ctx.background += [f_fm, f_mf, f_net, pool.submit(guarded, chain_ddp), pool.submit(guarded, chain_ddp_mf),
                       pool.submit(guarded, chain_accuracy)]
    pool.shutdown(wait=False)


def worker(args) -> None:
    """Subprocess of the lane: train/cache the digit classifier (--featnet) or score runs (--accuracy)."""
    from straightflow.image_evaluation import balanced_labels, clamp_images
    from straightflow.metrics.images import class_accuracy, feature_network
    from straightflow.runs import load_run, sample_run
    from straightflow.training.build import build_data
    from straightflow.training.config import RunConfig, apply_overrides

    work, steps = Path(args.work), (20 if args.dry_run else 300)
    data, _ = build_data(apply_overrides(RunConfig(), {"data.data": "digits", "data.conditional": True}))
    net = feature_network(data, work / "cache", steps=steps)
    if args.featnet:
        print(f"feature network: test accuracy {net.test_accuracy:.3f}")
        return
    n, result = (20 if args.dry_run else 200), {}
    for key in args.accuracy.split(","):
        try:
            run = load_run(work / key, device=args.device or "auto")
            labels = balanced_labels(n, run.num_classes)
            spec = ("euler", 8, 2.0) if key == "fm" else ("meanflow", 1, 1.0)
            sol = sample_run(run, n, solver=spec[0], steps=spec[1], label=labels.to(run.device), guidance=spec[2])
            finite = bool(torch.isfinite(sol.x).all())
            acc = class_accuracy(clamp_images(sol).x.cpu(), labels, net)
            result[key] = {"accuracy": acc, "finite": finite, "n": n, "nfe": sol.nfe,
                           "classifier_accuracy": net.test_accuracy}
        except Exception as e:
            traceback.print_exc()
            result[key] = {"error": last_line(e)}
    (work / "accuracy.json").write_text(json.dumps(result))
    print(json.dumps(result))
