"""What a minibatch-OT training step costs over a plain one, with and without a free core for the solver.

    .venv/bin/python benchmarks/ot_cost.py                 # the tables in docs/benchmarks.md (~6 minutes)
    .venv/bin/python benchmarks/ot_cost.py --slices 2      # a quick look

First the coupling alone: milliseconds per batch of 256 (checkerboard against N(0, I), one thread) for exact
OT over the whole batch (POT's network simplex), exact OT within blocks of 128 and of 64 rows
(`data.ot_block`), and Sinkhorn. Then the training step at the vector defaults of each method (RunConfig with
only the method and data set given, as `straightflow train` builds it), every coupling beside a plain run
(independent pairs), alternating slices of 100 steps, median over slices: step time over the plain step's.
Three conditions, each in a fresh process with one torch thread:

- free core: the machine otherwise idle, so the prefetch thread solves the next batch's OT on a core of its
  own while the step trains;
- one core: the process pinned to one core (os.sched_setaffinity), the strictest "no core free";
- busy neighbour: unpinned, beside one busy process (a Python loop, as another job on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

COUPLINGS = {
    "ot": {"data.coupling": "ot"},
    "ot, blocks of 128": {"data.coupling": "ot", "data.ot_block": 128},
    "ot, blocks of 64": {"data.coupling": "ot", "data.ot_block": 64},
    "sinkhorn": {"data.coupling": "sinkhorn"},
}
CONDITIONS = ("free core", "one core", "busy neighbour")

CHILD = r"""
import json, os, statistics, sys, tempfile, time
if sys.argv[4] == "1":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before any thread exists: all inherit it
import torch
torch.set_num_threads(1)
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer
method, data, slices, couplings = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[5])
variants = {"plain": {"data.coupling": "independent"}, **couplings}
times = {k: [] for k in variants}
with tempfile.TemporaryDirectory() as tmp:
    trainers = {k: Trainer(apply_overrides(RunConfig(), {"method.name": method, "data.data": data, **v,
                                                         "train.steps": 10 ** 7, "train.ckpt_every": 10 ** 9,
                                                         "train.log_every": 10 ** 9}),
                           os.path.join(tmp, str(i)), progress=False) for i, (k, v) in enumerate(variants.items())}
    for tr in trainers.values():
        tr.fit(max_steps=50)  # warm-up
    for _ in range(slices):
        for k, tr in trainers.items():
            start = time.perf_counter()
            tr.fit(max_steps=100)
            times[k].append((time.perf_counter() - start) / 100)
print(json.dumps({k: statistics.median(v) for k, v in times.items()}))
"""


def coupling_ms(data: str, repeats: int = 50) -> dict[str, float]:
    """Milliseconds per call of each coupling on a batch of 256 (one thread, this process)."""
    import torch

    from straightflow.data.toy import sample_toy
    from straightflow.training.build import build_coupling
    from straightflow.training.config import RunConfig, apply_overrides

    torch.set_num_threads(1)
    x1 = sample_toy(data, 256, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(256, x1.shape[1], generator=torch.Generator().manual_seed(1))
    out = {}
    for name, over in COUPLINGS.items():
        fn = build_coupling(apply_overrides(RunConfig(), over))  # the coupling a run with these settings uses
        fn(x0, x1, generator=torch.Generator())
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x0, x1, generator=torch.Generator())
        out[name] = (time.perf_counter() - start) / repeats * 1e3
    return out


def step_times(method: str, data: str, condition: str, slices: int) -> dict[str, float]:
    """Median seconds per training step of a plain run and of each coupling, measured in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy neighbour" else None
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, method, data, str(slices),
                              "1" if condition == "one core" else "0", json.dumps(COUPLINGS)],
                             env=env, capture_output=True, text=True, check=True)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="checkerboard", help="toy set (2-D by default; moons16d for 16-D)")
    p.add_argument("--methods", default="fm,meanflow")
    p.add_argument("--slices", type=int, default=10, help="alternating slices of 100 steps per run")
    args = p.parse_args()

    print(f"coupling alone, batch 256, {args.data} against N(0, I), one thread (ms per batch):\n")
    print("| coupling | ms |\n|---|---|")
    for name, ms in coupling_ms(args.data).items():
        print(f"| {name} | {ms:.2f} |")
    print(f"\ntraining step at the vector defaults, {args.data}, batch 256, one torch thread: step time over a "
          f"plain (independent) step, side by side\n")
    print("| method | condition | plain step (ms) | " + " | ".join(COUPLINGS) + " |")
    print("|---|---|---|" + "---|" * len(COUPLINGS))
    for method in args.methods.split(","):
        for condition in CONDITIONS:
            t = step_times(method, args.data, condition, args.slices)
            ratios = " | ".join(f"{t[name] / t['plain']:.2f}x" for name in COUPLINGS)
            print(f"| {method} | {condition} | {t['plain'] * 1e3:.2f} | {ratios} |", flush=True)
    print(f"\n(median over {args.slices} slices of 100 steps; compare ratios within a row, not absolute times)")


if __name__ == "__main__":
    main()
