"""The GPU check: training-step cost, small-model speed and a CUDA correctness lane, in one run of < 5 minutes.

    python benchmarks/gpu.py --out runs/gpu.md          # on a CUDA machine (writes gpu.md, gpu.json, gpu.log)
    python benchmarks/gpu.py --dry-run                  # the same code paths at toy sizes, on the CPU
    python benchmarks/gpu.py --sections step --models dit --budget-s 240      # e.g. a second run: DiT rows only

1. Training-step cost ("step"). The U-Net of the meanflow-cifar10-gpu preset (57.4M parameters, 3x32x32) and
   a DiT-S/2-like network (width 384, depth 12, 6 heads, patch 2: 256 tokens of 32x32x3, 32.4M parameters),
   batch 128, bf16 autocast, TF32 on, channels-last on CUDA (as the Trainer does), synthetic batches already
   on the device. One step = method.loss + backward + AdamW step (no clipping, no EMA), the same fixed
   function for every row: flow matching, and MeanFlow with method.jvp = tangent, func, func_nograd,
   finite_difference; eager, and torch.compile(dynamic=False) for --compile-modes (default fm,tangent: each
   distinct graph takes about a minute to compile). Mean ms over --steps steps after --warmup (CUDA events),
   ratio x FM (same network, same mode), images/s, and peak GiB (torch.cuda.max_memory_allocated over the
   timed steps, reset per row). Targets printed beside the rows: MeanFlow tangent <= 1.5x FM time and
   <= 1.3x FM peak memory.
2. Small-model speed ("small"). The digits U-Net of `--data digits` (RunConfig defaults: 1.14M parameters,
   batch 256) and the digits demo's (0.18M, batch 64, class-conditional): flow matching and MeanFlow
   (tangent) steps/s through the real Trainer (Trainer(cfg, out).fit(max_steps=...)), on CUDA and on the CPU
   (torch's default thread count) in the same run, against the target CUDA >= 5x CPU; then
   train.compile=true on CUDA when the budget allows.
3. CUDA correctness lane ("correct"), each row pass/FAIL with the error's last line, never a crash:
   class-conditional digits trained by the CLI with flow matching and MeanFlow (bf16, --compile, omega 1.5
   folded into MeanFlow), sampled by the CLI with guidance (`sample --class 3 --guidance 2`), then balanced
   samples scored by the project's digit classifier (class accuracy, chance 0.1, pass mark --min-accuracy);
   `torchrun --standalone --nproc-per-node 1 -m straightflow train` over nccl (moons flow matching, and
   digits MeanFlow class-conditional); `straightflow likelihood` of the moons run on CUDA. These run as
   subprocesses, in parallel, while section 1 compiles; compiled rows are timed only once they have finished.

Order of work, so that a tight budget drops the least useful rows: U-Net eager rows; U-Net compiled rows
(tangent first, with the lane in the background); small-model eager rows; DiT eager rows; DiT compiled rows;
small-model compiled rows. A row starts only if its estimated cost fits in what is left of --budget-s (the
U-Net's compiled rows also leave room for the eager rows after them); skipped rows say so. A watchdog writes
the report and stops everything at --hard-limit-s. The report (Markdown, JSON beside it, subprocess output
and tracebacks in a .log) is rewritten after every row, so a killed run still leaves its results.

--dry-run: toy networks (U-Net 8 channels, 2 levels; DiT 32 wide, 2 deep), batch 4, 2 timed steps, fp32
(CPU autocast is not the path under test), torch.compile with the aot_eager backend (no inductor C++ build),
no --compile in the lane and no compiled Trainer rows, 6 lane steps, one CPU thread. Without CUDA the script
refuses to run unless --dry-run is given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

SECTIONS = {"1": "step", "2": "small", "3": "correct", "step": "step", "small": "small", "correct": "correct"}
STEP_NAMES = {"fm": "flow matching", "tangent": "MeanFlow tangent", "func": "MeanFlow func",
              "func_nograd": "MeanFlow func_nograd", "finite_difference": "MeanFlow finite_difference"}
MODES = tuple(STEP_NAMES)
DIT = {"model.arch": "dit", "model.width": 384, "model.depth": 12, "model.heads": 6, "model.patch_size": 2}
TINY_UNET = {"model.channels": 8, "model.channel_mult": "2,2", "model.num_res_blocks": 1}  # attention at 16 kept
TINY_DIT = {"model.width": 32, "model.depth": 2, "model.heads": 2}
TIME_TARGET, MEMORY_TARGET, SPEED_TARGET = 1.5, 1.3, 5.0
# Estimated seconds per row on the H200 (compile dominates), used to decide whether a row still fits.
COST = {("unet", False): 8, ("unet", True): {"fm": 60, "tangent": 80}, ("dit", False): 4,
        ("dit", True): {"fm": 40, "tangent": 50}, "small": 6, "small-compile": 45}


_ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception|Interrupt)|error)\b:?")


def _last_line(err: BaseException | str) -> str:
    """The error's last line: an exception's 'Type: first line of its message'; for a log, its last exception
    line (torchrun's ChildFailedError summary passed over for the child's own error), else its last line."""
    if isinstance(err, BaseException):
        msg = (str(err).strip().splitlines() or [""])[0]
        text = f"{type(err).__name__}: {msg}"
    else:
        lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip(" =-\t")]
        errors = [ln for ln in lines if _ERROR_LINE.match(ln) and "ChildFailedError" not in ln]
        text = (errors or lines or ["(no output)"])[-1]
    return text if len(text) <= 240 else text[:237] + "..."


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class Ctx:
    """Everything the sections share: options, device, clock, report rows, logs and child processes."""

    args: argparse.Namespace
    device: torch.device
    work: Path
    start: float = field(default_factory=time.perf_counter)
    rows: dict = field(default_factory=lambda: {"step": [], "small": [], "correct": []})
    notes: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    current: str = "start-up"
    background: list = field(default_factory=list)
    procs: set = field(default_factory=set)
    tls_exclude: object = None  # this thread's excluded dispatch keys at start (see recover)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, seconds: float, reserve: float = 0.0) -> bool:
        """Whether a row of `seconds` still fits in --budget-s, keeping `reserve` for cheaper rows to come."""
        return self.elapsed() + seconds + reserve <= self.args.budget_s

    def eager_reserve(self) -> float:
        """Estimated seconds of the eager rows that run after the U-Net's compiled ones (kept before those)."""
        a = self.args
        small = 4 * len(a.digits_models) * COST["small"] if "small" in a.sections else 0
        dit = len(a.modes) * COST[("dit", False)] if "step" in a.sections and "dit" in a.models else 0
        return small + dit

    def hard_left(self) -> float:
        return self.args.hard_limit_s - self.elapsed()

    def say(self, text: str) -> None:
        print(f"[gpu {self.elapsed():6.1f}s] {text}", file=sys.stderr, flush=True)
        self.log(text)

    def log(self, text: str) -> None:
        with self.lock, open(self.paths()["log"], "a") as f:
            f.write(f"[{self.elapsed():7.1f}s] {text}\n")

    def paths(self) -> dict[str, Path]:
        md = Path(self.args.out) if self.args.out else self.work / "gpu.md"
        return {"md": md, "json": md.with_suffix(".json"), "log": md.with_suffix(".log")}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def wait_background(self) -> None:
        """Let the correctness lane's subprocesses finish, so that nothing else uses the GPU while timing."""
        if any(not f.done() for f in self.background):
            self.say("waiting for the correctness lane to finish before timing")
        for f in self.background:
            with contextlib.suppress(Exception):  # the lane's chains record their own failures
                f.result()

    def save(self) -> str:
        """Rewrite the report. Rows change in two threads, so a render that races a change is retried."""
        with self.lock:
            self.meta["seconds"] = round(self.elapsed(), 1)
            for attempt in range(5):
                try:
                    text = render(self)
                    data = json.dumps({"meta": self.meta, "notes": self.notes, **self.rows}, indent=2, default=str)
                    break
                except RuntimeError:  # dictionary changed size during iteration
                    if attempt == 4:
                        raise
                    time.sleep(0.05)
            p = self.paths()
            p["md"].parent.mkdir(parents=True, exist_ok=True)
            p["md"].write_text(text)
            p["json"].write_text(data)
            return text

    def recover(self) -> None:
        """Free the row's memory; after a failure, check that autograd still works in this thread and repair
        it if not. (A failed torch.compile trace through torch.func.jvp leaves suspended functorch frames whose
        collection later re-excludes the autograd dispatch keys of this thread: every later backward fails.)"""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
        torch.set_grad_enabled(True)
        if autograd_works() or self.tls_exclude is None:
            return
        fixed = restore_dispatch_tls(self.tls_exclude)
        works = autograd_works()
        self.notes.append(f"after '{self.current}' failed, autograd was broken in this process (dispatch keys "
                          f"{', '.join(fixed) or 'none'} excluded); "
                          + ("restored, later rows are fine" if works else "NOT restored: later rows are unreliable"))
        self.say(self.notes[-1])

    def kill_children(self) -> None:
        for p in list(self.procs):
            with contextlib.suppress(Exception):
                os.killpg(p.pid, signal.SIGKILL)


def autograd_works() -> bool:
    x = torch.ones(2, requires_grad=True)
    return bool((x * 2).sum().requires_grad)


def restore_dispatch_tls(baseline) -> list[str]:
    """Un-exclude the dispatch keys this thread excludes now but did not at start (torch internals, guarded)."""
    fixed = []
    try:
        now = torch._C._dispatch_tls_local_exclude_set()
        for name, key in torch._C.DispatchKey.__members__.items():
            with contextlib.suppress(Exception):
                if now.has(key) and not baseline.has(key):
                    torch._C._dispatch_tls_set_dispatch_key_excluded(key, False)
                    fixed.append(name)
    except Exception:  # an API that moved: report broken rather than crash
        pass
    return fixed


# ------------------------------------------------------------------------------------ 1. training-step cost
@dataclass
class Prepared:
    """One step-cost row, built and warmed up (and so compiled): its step function and batch size."""

    step: object
    batch_size: int


def step_config(arch: str, mode: str, args):
    from straightflow.training.config import PRESETS, RunConfig, apply_overrides

    o = {**PRESETS["meanflow-cifar10-gpu"], "train.batch_size": args.batch_size}
    if arch == "dit":
        o.update(DIT)
    if args.dry_run:
        o.update(TINY_DIT if arch == "dit" else TINY_UNET)
    o.update({"method.name": "fm"} if mode == "fm" else {"method.name": "meanflow", "method.jvp": mode})
    return apply_overrides(RunConfig(), o)


def prepare_step(ctx: Ctx, arch: str, mode: str, compiled: bool) -> Prepared:
    """Model, AdamW, method and a synthetic batch on the device; `--warmup` steps run (and compile)."""
    from straightflow.paths.coupling import CoupledBatch
    from straightflow.training.build import build_method, build_model
    from straightflow.training.device import autocast

    cfg = step_config(arch, mode, ctx.args)
    torch.manual_seed(0)
    with torch.device(ctx.device):  # parameters made on the device: a 57M-parameter init on the CPU is slow
        model = build_model(cfg, 3 * 32 * 32).to(ctx.device)
    if ctx.cuda:
        model.to(memory_format=torch.channels_last)  # as the Trainer does for images on CUDA
    ctx.meta.setdefault("params", {})[arch] = sum(p.numel() for p in model.parameters())
    o = cfg.optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    method = build_method(cfg)
    net = torch.compile(model, backend=ctx.args.compile_backend, dynamic=False) if compiled else model
    g = torch.Generator(ctx.device).manual_seed(0)
    b = cfg.train.batch_size
    batch = CoupledBatch(torch.randn(b, 3, 32, 32, device=ctx.device, generator=g),
                         torch.rand(b, 3, 32, 32, device=ctx.device, generator=g) * 2 - 1, None)

    def step() -> None:
        with autocast(ctx.device, ctx.args.precision):
            out = method.loss(net, batch, g)
        loss = out.loss.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(ctx.args.warmup):
        step()
    ctx.sync()
    return Prepared(step, b)


def measure_step(ctx: Ctx, prep: Prepared) -> dict:
    """Mean ms over --steps steps (CUDA events) and the peak device memory over them."""
    n = ctx.args.steps
    ctx.sync()
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            prep.step()
        end.record()
        torch.cuda.synchronize(ctx.device)
        ms, peak = start.elapsed_time(end) / n, torch.cuda.max_memory_allocated(ctx.device) / 2**30
    else:
        t0 = time.perf_counter()
        for _ in range(n):
            prep.step()
        ms, peak = 1000 * (time.perf_counter() - t0) / n, None
    return {"ms": ms, "images_per_s": prep.batch_size * 1000 / ms, "peak_gib": peak}


def step_rows(ctx: Ctx, arch: str, compiled: bool) -> None:
    """The rows of one network, eager or compiled. Compiled rows go tangent first (the longest compile, which
    the correctness lane overlaps), each compiled, timed once the lane is done, freed, and the compiler reset."""
    wanted = ctx.args.compile_modes if compiled else ctx.args.modes
    how = "compiled" if compiled else "eager"
    cost = COST[(arch, compiled)]
    reserve = ctx.eager_reserve() if compiled and arch == "unet" else 0.0
    order = sorted(MODES, key=lambda m: m != "tangent") if compiled else MODES
    for mode in order:
        row = {"model": arch, "step": mode, "compiled": compiled, "status": "ok"}
        if mode not in wanted:
            row["status"] = f"skipped: not in --{'compile-' if compiled else ''}modes"
        elif not ctx.fits(cost.get(mode, max(cost.values())) if isinstance(cost, dict) else cost, reserve):
            row["status"] = (f"skipped: time budget ({ctx.args.budget_s - ctx.elapsed():.0f} s left of --budget-s"
                             + (f", {reserve:.0f} s of it kept for the eager rows after this" if reserve else "") + ")")
        ctx.rows["step"].append(row)
        if row["status"] != "ok":
            continue
        ctx.current = f"step cost {arch} {mode} {how}"
        ctx.say(f"{ctx.current}: building{' and compiling' if compiled else ''}")
        prep = None
        try:
            if compiled:
                torch.compiler.reset()
            t0 = time.perf_counter()
            prep = prepare_step(ctx, arch, mode, compiled)
            row["prepare_s"] = round(time.perf_counter() - t0, 1)
            if compiled:
                ctx.wait_background()
            row.update(measure_step(ctx, prep))
        except Exception as e:  # a failing combination is a row, not a crash
            row["status"] = f"FAIL: {_last_line(e)}"
            ctx.log(traceback.format_exc())
        prep = None
        ctx.recover()
        ctx.save()
    if compiled:
        torch.compiler.reset()


# ----------------------------------------------------------------------------------- 2. small-model speed
def small_overrides(key: str, args) -> dict:
    from straightflow.cli.demo_digits import DIGITS_COMMON

    base = {"data.data": "digits"} if key == "default" else dict(DIGITS_COMMON)
    if args.dry_run:
        base["train.batch_size"] = 16
    return base


def small_row(ctx: Ctx, key: str, method: str, device: str, compiled: bool = False) -> dict:
    """Steps/s of the real Trainer: warm-up, then fit() in chunks until --small-seconds have passed."""
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    o = {**small_overrides(key, ctx.args), "method.name": method, "train.device": device, "train.steps": 10**9,
         "train.ckpt_every": 10**9, "train.num_threads": ctx.meta["cpu_threads"], "train.compile": compiled}
    if method == "meanflow":
        o["method.jvp"] = "tangent"
    cfg = apply_overrides(RunConfig(), o)
    out = ctx.work / "small" / f"{key}-{method}-{device}{'-compiled' if compiled else ''}"
    trainer = Trainer(cfg, out, progress=False)
    on_cpu = trainer.device.type == "cpu"
    trainer.fit(max_steps=ctx.args.small_warmup if not on_cpu else 2)
    sync = (lambda: torch.cuda.synchronize(trainer.device)) if trainer.device.type == "cuda" else (lambda: None)
    sync()
    chunk, done, t0 = (1 if on_cpu else 10), 0, time.perf_counter()
    while True:
        trainer.fit(max_steps=chunk)
        done += chunk
        sync()
        if time.perf_counter() - t0 >= ctx.args.small_seconds:
            break
    rate = done / (time.perf_counter() - t0)
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"steps_per_s": rate, "params": params, "batch_size": cfg.train.batch_size}


def small_rows(ctx: Ctx, compiled: bool) -> None:
    dev = str(ctx.device)
    for key in ctx.args.digits_models:
        for method in ("fm", "meanflow"):
            row = next((r for r in ctx.rows["small"] if r["model"] == key and r["method"] == method), None)
            if row is None:
                row = {"model": key, "method": method, "status": "ok"}
                ctx.rows["small"].append(row)
            targets = [(dev, "compiled")] if compiled else [(dev, "device"), ("cpu", "cpu")]
            for device, col in targets:
                need = COST["small-compile"] if compiled else COST["small"]
                if compiled and not ctx.cuda:
                    row[col] = "skipped: the dry-run does not compile through the Trainer (inductor on the CPU)"
                    continue
                if not ctx.fits(need):
                    row[col] = f"skipped: time budget ({ctx.args.budget_s - ctx.elapsed():.0f} s left)"
                    continue
                ctx.current = f"small model {key} {method} on {device}{' compiled' if compiled else ''}"
                ctx.say(ctx.current)
                if compiled:
                    torch.compiler.reset()
                try:
                    r = small_row(ctx, key, method, device, compiled)
                    row[col] = r["steps_per_s"]
                    row.update(params=r["params"], batch_size=r["batch_size"])
                except Exception as e:
                    row[col] = f"FAIL: {_last_line(e)}"
                    ctx.log(traceback.format_exc())
                finally:
                    torch.set_num_threads(ctx.meta["cpu_threads"])
                ctx.recover()
                ctx.save()


# ------------------------------------------------------------------------------ 3. the correctness lane
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
        row["status"] = out if rc is None else "FAIL: " + _last_line(out)
        ctx.save()
        return False
    try:
        row["details"] = check() if check else ""
        row["status"] = "pass"
    except Exception as e:
        row["status"] = f"FAIL: {_last_line(e)}"
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

    worker = [py, os.path.abspath(__file__), "--worker", "--work", str(lane), *(["--dry-run"] if a.dry_run else []),
              *(["--device", "cpu"] if not ctx.cuda else [])]

    def featnet() -> tuple:  # the classifier is trained (and cached) while the models train
        return run_cmd(ctx, "feature network", [*worker, "--featnet"], env)

    def guarded(fn, *args):
        """A chain's unexpected error fails its pending rows instead of escaping."""
        try:
            return fn(*args)
        except Exception as e:
            ctx.log(traceback.format_exc())
            for row in rows.values():
                if row["status"] == "pending":
                    row["status"] = f"FAIL: benchmark error in the lane: {_last_line(e)}"
            ctx.save()
            return False if fn is chain_model else (1, _last_line(e), 0.0)

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
                rows[f"acc_{k}"]["status"] = "FAIL: feature network: " + _last_line(net_out)
            ctx.save()
            return
        rc, out, s = run_cmd(ctx, "accuracy", [*worker, "--accuracy", ",".join(keys)], env)
        result = json.loads((lane / "accuracy.json").read_text()) if rc == 0 else {}
        for k in keys:
            row, r = rows[f"acc_{k}"], result.get(k, {})
            row["seconds"] = round(s, 1)
            if rc is None:
                row["status"] = out
            elif rc != 0 or "error" in r:
                row["status"] = "FAIL: " + (r.get("error") or _last_line(out))
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
            result[key] = {"error": _last_line(e)}
    (work / "accuracy.json").write_text(json.dumps(result))
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------------ report
def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and v is not None else "-"


def render(ctx: Ctx) -> str:
    m, a = ctx.meta, ctx.args
    out = [f"# GPU check (`benchmarks/gpu.py`){' -- DRY RUN, toy sizes, not a measurement' if a.dry_run else ''}",
           "", f"{m['date']}; torch {m['torch']} (CUDA {m['cuda']}); device: {m['device_name']}; "
           f"{m['cpu_threads']} CPU threads; straightflow {m['straightflow']} at {m['git']}; {m['seconds']} s "
           f"(budget {a.budget_s:g} s). Command: `{m['command']}`", ""]
    out += render_step(ctx) + render_small(ctx) + render_correct(ctx)
    if ctx.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in ctx.notes] + [""]
    return "\n".join(out)


def render_step(ctx: Ctx) -> list[str]:
    rows = ctx.rows["step"]
    if not rows:
        return []
    p = ctx.meta.get("params", {})
    b = ctx.args.batch_size
    prec = ("bf16 autocast" if ctx.args.precision == "bf16" else "fp32, no autocast") + \
        (", TF32, channels-last" if ctx.cuda else "")
    out = [f"## 1. Training-step cost (batch {b}, 3x32x32, {prec}; one step = loss, backward, AdamW)", "",
           f"Compiled: torch.compile(dynamic=False, backend {ctx.args.compile_backend}) for "
           f"{', '.join(ctx.args.compile_modes) or 'no rows'} (--compile-modes); x FM: against flow matching on the "
           "same network in the same mode; peak: torch.cuda.max_memory_allocated over the timed steps.", ""]
    for arch in dict.fromkeys(r["model"] for r in rows):
        if ctx.args.dry_run:
            name = "toy U-Net (8 channels, 2 levels)" if arch == "unet" else "toy DiT (32 wide, 2 deep, patch 2)"
        else:
            name = "U-Net of meanflow-cifar10-gpu" if arch == "unet" else \
                "DiT-S/2-like (384 wide, 12 deep, 6 heads, patch 2)"
        name += f", {p[arch] / 1e6:.{1 if p[arch] >= 1e6 else 3}f}M parameters" if arch in p else ""
        out += [f"### {name}", "", "| step | eager ms | x FM | images/s | peak GiB | x FM peak | compiled ms | x FM | "
                "images/s | peak GiB | x FM peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        by = {(r["step"], r["compiled"]): r for r in rows if r["model"] == arch}
        notes, verdicts = [], []
        for mode in MODES:
            cells = [STEP_NAMES[mode]]
            for compiled in (False, True):
                r, fm = by.get((mode, compiled)), by.get(("fm", compiled))
                if r is None or "ms" not in r:
                    cells += ["-"] * 5
                    if r is not None and not r["status"].startswith("skipped: not in"):
                        notes.append(f"{STEP_NAMES[mode]}, {'compiled' if compiled else 'eager'}: {r['status']}")
                    continue
                x = r["ms"] / fm["ms"] if fm and "ms" in fm else None
                xm = r["peak_gib"] / fm["peak_gib"] if fm and fm.get("peak_gib") and r["peak_gib"] else None
                cells += [_num(r["ms"], ".1f"), _num(x, ".2f"), _num(r["images_per_s"], ".0f"),
                          _num(r["peak_gib"], ".1f"), _num(xm, ".2f")]
                if mode == "tangent" and x is not None:
                    ok = x <= TIME_TARGET and (xm is None or xm <= MEMORY_TARGET)
                    mem = f"{xm:.2f}x" if xm is not None else "n/a"
                    verdicts.append(f"{'compiled' if compiled else 'eager'}: time {x:.2f}x, memory {mem} -> "
                                    f"{'met' if ok else 'NOT met'}")
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"Target: MeanFlow tangent <= {TIME_TARGET}x FM time and <= {MEMORY_TARGET}x FM peak memory. "
                + ("; ".join(verdicts) if verdicts else "not measured") + "."]
        if notes:
            out += [""] + [f"- {n}" for n in notes]
        out.append("")
    return out


def render_small(ctx: Ctx) -> list[str]:
    rows = ctx.rows["small"]
    if not rows:
        return []
    dev, thr = str(ctx.device), ctx.meta["cpu_threads"]
    out = [f"## 2. Small model speed through the Trainer (digits 8x8, fp32; CPU: {thr} thread(s))", "",
           f"| model | method | {dev} steps/s | {dev} compiled steps/s | CPU steps/s | {dev} / CPU | "
           f"target >= {SPEED_TARGET:g}x |", "|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        name = ("`--data digits` defaults" if r["model"] == "default" else "digits demo") + \
            (f" ({r['params'] / 1e6:.2f}M, batch {r['batch_size']})" if "params" in r else "")
        method = "flow matching" if r["method"] == "fm" else "MeanFlow tangent"
        cells = []
        for col in ("device", "compiled", "cpu"):
            v = r.get(col)
            cells.append(_num(v, ".1f") if isinstance(v, float) else "-")
            if isinstance(v, str):
                notes.append(f"{name}, {method}, {col}: {v}")
        ratio = r["device"] / r["cpu"] if all(isinstance(r.get(c), float) for c in ("device", "cpu")) else None
        verdict = "-" if ratio is None else ("met" if ratio >= SPEED_TARGET else "NOT met")
        out.append(f"| {name} | {method} | " + " | ".join(cells) + f" | {_num(ratio, '.1f')} | {verdict} |")
    return out + [""] + [f"- {n}" for n in notes] + ([""] if notes else [])


def render_correct(ctx: Ctx) -> list[str]:
    rows = ctx.rows["correct"]
    if not rows:
        return []
    out = [f"## 3. Correctness lane on {ctx.device}", "", "| check | result | s | details |", "|---|---|---|---|"]
    for r in rows:
        status = r["status"].replace("|", "/")
        out.append(f"| {r['check']} | {status} | {_num(r['seconds'], '.0f')} | {r['details'].replace('|', '/')} |")
    return out + [""]


# ------------------------------------------------------------------------------------------------ main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", "--tiny", action="store_true", help="toy sizes on the CPU, to check the code paths")
    p.add_argument("--out", help="Markdown report path; the JSON and the log go beside it (default: in --work)")
    p.add_argument("--sections", default="step,small,correct", help="subset of step,small,correct (or 1,2,3)")
    p.add_argument("--models", default="unet,dit", help="section 1 networks: unet,dit")
    p.add_argument("--modes", default=",".join(MODES), help="section 1 eager rows: fm and the MeanFlow JVP modes")
    p.add_argument("--compile-modes", default="fm,tangent", help="section 1 rows also run under torch.compile "
                   "('' for none; each distinct graph takes about a minute to compile on the H200)")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend for section 1 "
                   "(default inductor; aot_eager in a dry run)")
    p.add_argument("--precision", default=None, choices=("bf16", "fp32"), help="autocast of sections 1 and 3 "
                   "(default bf16; fp32 in a dry run: CPU autocast is not the path under test)")
    p.add_argument("--batch-size", type=int, default=None, help="section 1 batch (default 128; 4 in a dry run)")
    p.add_argument("--steps", type=int, default=None, help="section 1 timed steps per row (default 10; dry 2)")
    p.add_argument("--warmup", type=int, default=None, help="section 1 warm-up steps per row (default 3; dry 1)")
    p.add_argument("--digits-models", default="default,demo", help="section 2 networks: default,demo")
    p.add_argument("--small-seconds", type=float, default=None, help="section 2 timing window per row (default 2)")
    p.add_argument("--small-warmup", type=int, default=20, help="section 2 warm-up steps on the device")
    p.add_argument("--no-small-compile", action="store_true", help="skip the section 2 train.compile=true rows")
    p.add_argument("--lane-steps", type=int, default=None, help="section 3 training steps (default 400; dry 6)")
    p.add_argument("--min-accuracy", type=float, default=0.2, help="section 3 class-accuracy pass mark")
    p.add_argument("--budget-s", type=float, default=None, help="rows start only if they fit (default 270; dry 900)")
    p.add_argument("--hard-limit-s", type=float, default=None, help="watchdog: report and stop (default 295)")
    p.add_argument("--device", default=None, help="cuda (default), or cpu (default of --dry-run)")
    p.add_argument("--work", help="folder for runs and caches (default: a new temporary folder)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--featnet", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--accuracy", help=argparse.SUPPRESS)
    a = p.parse_args()
    dry = a.dry_run
    for name, full, tiny in (("compile_backend", "inductor", "aot_eager"), ("precision", "bf16", "fp32"),
                             ("batch_size", 128, 4),
                             ("steps", 10, 2), ("warmup", 3, 1), ("small_seconds", 2.0, 0.2),
                             ("lane_steps", 400, 6), ("budget_s", 270.0, 900.0), ("hard_limit_s", 295.0, 1200.0)):
        if getattr(a, name) is None:
            setattr(a, name, tiny if dry else full)
    try:
        a.sections = [SECTIONS[s.strip()] for s in a.sections.split(",") if s.strip()]
    except KeyError as e:
        p.error(f"unknown section {e}; choose from step, small, correct")
    for name, allowed in (("models", ("unet", "dit")), ("modes", MODES), ("compile_modes", MODES),
                          ("digits_models", ("default", "demo"))):
        values = [v.strip() for v in getattr(a, name).split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"--{name.replace('_', '-')}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
        setattr(a, name, values)
    return a


def main() -> int:
    a = parse_args()
    if a.worker:
        worker(a)
        return 0
    want_cuda = a.device is None and not a.dry_run or (a.device or "").startswith("cuda")
    work = Path(a.work or tempfile.mkdtemp(prefix="straightflow-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    if want_cuda and not torch.cuda.is_available():
        msg = ("benchmarks/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here; run it with "
               "--dry-run to check its code paths on the CPU at toy sizes")
        print(msg, file=sys.stderr)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(f"# GPU check (`benchmarks/gpu.py`)\n\nNot run: {msg}.\n")
        return 2
    device = torch.device(a.device or ("cuda" if want_cuda else "cpu"))
    if a.dry_run and device.type == "cpu":
        torch.set_num_threads(1)  # a shared small CPU: spin-waiting OpenMP threads collapse under load
    ctx = Ctx(a, device, work)
    with contextlib.suppress(Exception):
        ctx.tls_exclude = torch._C._dispatch_tls_local_exclude_set()
    ctx.paths()["log"].parent.mkdir(parents=True, exist_ok=True)
    ctx.paths()["log"].write_text("")
    if ctx.cuda:
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False
    ctx.meta.update(collect_meta(ctx))
    ctx.say(f"device {ctx.meta['device_name']}, work folder {work}, report {ctx.paths()['md']}")

    def on_deadline() -> None:
        ctx.notes.append(f"watchdog: stopped at {ctx.elapsed():.0f} s (--hard-limit-s) during: {ctx.current}")
        ctx.kill_children()
        with contextlib.suppress(Exception):
            print(ctx.save())
        os._exit(3)

    watchdog = threading.Timer(a.hard_limit_s, on_deadline)
    watchdog.daemon = True
    watchdog.start()
    s, unet, dit = a.sections, "unet" in a.models, "dit" in a.models
    plan = [("step" in s and unet, step_rows, "unet", False),
            ("correct" in s, start_lane),
            ("step" in s and unet and bool(a.compile_modes), step_rows, "unet", True),
            (True, Ctx.wait_background),  # nothing below is timed while the lane's subprocesses use the GPU
            ("small" in s, small_rows, False),
            ("step" in s and dit, step_rows, "dit", False),
            ("step" in s and dit and bool(a.compile_modes), step_rows, "dit", True),
            ("small" in s and not a.no_small_compile, small_rows, True)]
    for wanted, fn, *fn_args in plan:
        if not wanted:
            continue
        try:
            fn(ctx, *fn_args)
        except Exception as e:  # a bug here must not cost the rest of the GPU run
            ctx.notes.append(f"benchmark error in {fn.__name__}{tuple(fn_args)}: {_last_line(e)} (see the log)")
            ctx.log(traceback.format_exc())
            ctx.recover()
    watchdog.cancel()
    ctx.current = "done"
    text = ctx.save()
    print(text)
    ctx.say(f"wrote {ctx.paths()['md']}, {ctx.paths()['json'].name}, {ctx.paths()['log'].name}")
    return 0


def collect_meta(ctx: Ctx) -> dict:
    import straightflow

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD") or "unknown commit"
        rev += " (with uncommitted changes)" if rev != "unknown commit" and git("status", "--porcelain") else ""
    except (OSError, subprocess.SubprocessError):
        rev = "unknown commit"
    name = torch.cuda.get_device_name(ctx.device) if ctx.cuda else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "device_name": name,
            "cpu_threads": torch.get_num_threads(), "straightflow": straightflow.__version__, "git": rev,
            "command": " ".join(["python", *sys.argv]), "dry_run": ctx.args.dry_run, "device": str(ctx.device),
            "args": {k: v for k, v in vars(ctx.args).items() if k not in ("worker", "featnet", "accuracy")}}


if __name__ == "__main__":
    sys.exit(main())
