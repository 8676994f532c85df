"""What the GPU check's sections share: the run's options, device, clock, rows, logs and child processes."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

# Estimated seconds per row on the H200 (compile dominates), used to decide whether a row still fits.
COST = {("unet", False): 8, ("unet", True): {"fm": 60, "tangent": 80}, ("dit", False): 4,
        ("dit", True): {"fm": 40, "tangent": 50}, "small": 6, "small-compile": 45}

_ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception|Interrupt)|error)\b:?")


def last_line(err: BaseException | str) -> str:
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

    def wait_background(self) -> None:
        """Let the correctness lane's subprocesses finish, so that nothing else uses the GPU while timing."""
        if any(not f.done() for f in self.background):
            self.say("waiting for the correctness lane to finish before timing")
        for f in self.background:
            with contextlib.suppress(Exception):  # the lane's chains record their own failures
                f.result()

    def save(self) -> str:
        """Rewrite the report. Rows change in two threads, so a render that races a change is retried."""
        from gpu_check.report import render  # the report reads this class: imported here, not at the top

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


def collect_meta(ctx: Ctx) -> dict:
    """The report's header: date, versions, device, thread count, commit and the command line."""
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
