"""Several training runs side by side, one `straightflow train` process each (the demos' two runs).

A run at the CPU defaults uses one thread (vectors, and images of at most 16x16 pixels), so on a 2-core
machine two runs train in the wall-clock time of the slower one instead of the sum. Each child's output is
relayed line by line behind a "[name]" prefix; its progress, which then goes to a pipe, prints plain lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["train_argv", "train_runs", "parallel_slots", "timing_line", "train_demo_runs"]


def train_argv(method: str, out: str, steps: int, overrides: dict[str, Any], resume: bool,
               progress: bool) -> list[str]:
    """The `straightflow train` arguments of one run: --set KEY=VALUE for every override."""
    argv = ["--method", method, "--out", out, "--steps", str(steps), "--no-plots"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return argv + (["--resume"] if resume else []) + ([] if progress else ["--no-progress"])


def parallel_slots(n_jobs: int, device: str) -> int:
    """How many runs to train at once: one per core on a CPU (each run takes one thread), one on an accelerator."""
    return max(1, min(n_jobs, os.cpu_count() or 1)) if device == "cpu" else 1


def _relay(name: str, stream, tail: list[str]) -> None:
    for line in stream:
        tail[:] = [line.rstrip()]
        print(f"[{name}] {line}", end="", flush=True)


def train_runs(jobs: dict[str, Sequence[str]], slots: int) -> dict[str, float]:
    """`straightflow train ARGV` for each named job, at most `slots` at once; returns, when all have finished,
    each job's wall-clock seconds.

    A child that fails raises RuntimeError naming the job and its last line. Ctrl-C reaches the children too
    (same process group): each saves its checkpoint and stops, and the demo run again resumes them.
    """
    env = {**os.environ, "STRAIGHTFLOW_PROGRESS_EVERY": os.environ.get("STRAIGHTFLOW_PROGRESS_EVERY", "15")}
    pending, running, failed, seconds = list(jobs.items()), {}, [], {}
    try:
        while pending or running:
            while pending and len(running) < slots:
                name, argv = pending.pop(0)
                child = subprocess.Popen([sys.executable, "-m", "straightflow", "train", *argv], env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
                tail: list[str] = []  # the child's last line, kept by its reader
                reader = threading.Thread(target=_relay, args=(name, child.stdout, tail), daemon=True)
                reader.start()
                running[name] = (child, reader, tail, time.perf_counter())
            finished = [name for name, (child, *_) in running.items() if child.poll() is not None]
            if not finished:
                time.sleep(0.2)
            for name in finished:
                child, reader, tail, start = running.pop(name)
                reader.join()
                seconds[name] = time.perf_counter() - start
                if child.returncode != 0:
                    failed.append(f"{name} (exit {child.returncode}: {tail[0] if tail else 'no output'})")
    except KeyboardInterrupt:
        children = [child for child, *_ in running.values()]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            child.wait()
        raise
    if failed:
        raise RuntimeError(f"training failed: {'; '.join(failed)}")
    return {name: seconds[name] for name in jobs}


def timing_line(steps: dict[str, int], seconds: dict[str, float], slots: int, device: str) -> str:
    """'training (side by side, on cpu): fm 6000 steps in 5.2 min, ...', the first line of a demo's table."""
    runs = ", ".join(f"{name} {steps[name]} steps in {seconds[name] / 60:.1f} min" for name in seconds)
    return f"training ({'side by side' if slots > 1 else 'one after the other'}, on {device}): {runs}"


def train_demo_runs(runs: dict[str, dict[str, Any]], out: Path, scale: float, vectors: bool,
                    progress: bool, tag: str = "demo") -> tuple[dict[str, int], dict[str, float], str]:
    """A demo's runs, each `train --method NAME` with its overrides at the default steps times `scale`, side by
    side where the device allows, into out/NAME (resumed where a checkpoint is there already). Returns the
    steps and wall-clock seconds of each run and the timing line for the demo's table."""
    from straightflow.training.config import RunConfig, apply_overrides, device_type, resolve_defaults
    from straightflow.training.trainer import CHECKPOINT

    device, jobs, steps = device_type("auto"), {}, {}
    for name, overrides in runs.items():
        cfg = resolve_defaults(apply_overrides(RunConfig(), {"method.name": name, **overrides}), vectors=vectors,
                               device=device)
        steps[name] = max(10, int(cfg.train.steps * scale))
        print(f"[{tag}] training {name} for {steps[name]} steps", flush=True)
        jobs[name] = train_argv(name, str(out / name), steps[name], overrides, (out / name / CHECKPOINT).exists(),
                                progress)
    slots = parallel_slots(len(jobs), device)
    seconds = train_runs(jobs, slots)
    return steps, seconds, timing_line(steps, seconds, slots, device)
