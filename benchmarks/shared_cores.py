"""Training speed of `straightflow train --data digits --conditional` when another process shares the cores.

    .venv/bin/python benchmarks/shared_cores.py              # the table in docs/benchmarks.md (~3 minutes)
    .venv/bin/python benchmarks/shared_cores.py --steps 20   # a quick look

Each row trains the default digits U-Net (RunConfig defaults, class-conditional, flow matching and MeanFlow)
in a fresh process for --steps steps after 10 warm-up steps and reports steps/s, under four conditions:
threads 2 (torch's default on this machine) or 1, and OpenMP's default waiting (spin, then sleep) or passive waiting
(OMP_WAIT_POLICY, read once when torch loads); each with the cores idle and with one busy process beside it
(a Python loop, as another job on a shared machine). The command line sets passive waiting unless the
environment says otherwise (cli/main.py): spinning threads that wait for a core held by another process
burn their time slices, which is what collapses a 2-thread run on a busy 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, tempfile, torch
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer
method, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = apply_overrides(RunConfig(), {"data.data": "digits", "data.conditional": True, "method.name": method,
                                    "train.steps": 10 ** 6, "train.num_threads": threads, "train.device": "cpu",
                                    "train.log_every": 10 ** 6, "train.ckpt_every": 10 ** 6})
with tempfile.TemporaryDirectory() as out:
    trainer = Trainer(cfg, out, progress=False)
    trainer.fit(max_steps=10)
    start = time.perf_counter()
    trainer.fit(max_steps=steps)
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - start)}))
"""


def busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(method: str, threads: int, policy: str, loaded: bool, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    load = busy() if loaded else None
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, method, str(threads), str(steps)], env=env,
                             capture_output=True, text=True, check=True)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--methods", default="fm,meanflow")
    args = p.parse_args()
    print(f"# shared cores: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| method | threads | OMP_WAIT_POLICY | idle steps/s | with a busy process | slowdown |")
    print("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for threads, policy in ((2, "default"), (2, "PASSIVE"), (1, "default"), (1, "PASSIVE")):
            idle = measure(method, threads, policy, False, args.steps)
            shared = measure(method, threads, policy, True, args.steps)
            print(f"| {method} | {threads} | {policy.lower()} | {idle:.2f} | {shared:.2f} | {idle / shared:.1f}x |",
                  flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
