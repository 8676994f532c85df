"""Data-parallel throughput on this machine: 1 process x 2 threads vs 2 processes x 1 thread (gloo).

    python benchmarks/ddp.py [--steps 300] [--method fm|meanflow] [--batch-size 256]

Each configuration trains the same model on the same global batch through the real CLI path (Trainer,
and torchrun + DDP for 2 processes). Prints examples/s for both, and for the 2-process run the share of
step time spent in gradient communication, measured by timing the same steps with DDP's all-reduce
bypassed (the model called directly instead of through the DDP wrapper).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    import torch

    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    cfg = apply_overrides(RunConfig(), {
        "method.name": args.method, "data.data": "checkerboard", "train.batch_size": args.batch_size,
        "train.steps": 3 * args.steps + 20, "train.log_every": 10**9, "train.ckpt_every": 10**9,
        "train.device": "cpu",
    })
    trainer = Trainer(cfg, Path(args.out) / "run", progress=False)
    trainer.fit(max_steps=20)  # warm-up

    def timed() -> float:
        start = time.perf_counter()
        trainer.fit(max_steps=args.steps)
        return time.perf_counter() - start

    with_ddp = timed()
    result = {"seconds": with_ddp}
    if trainer.dist.enabled:
        ddp_model = trainer.forward_model
        trainer.forward_model = trainer.model  # same work, no all-reduce
        result["seconds_no_comm"] = timed()
        trainer.forward_model = ddp_model
    if trainer.dist.is_main:
        Path(args.out, "result.json").write_text(json.dumps(result))


def launch(nproc: int, threads: int, args) -> dict:
    out = tempfile.mkdtemp()
    base = [__file__, "--worker", "--threads", str(threads), "--steps", str(args.steps), "--method", args.method,
            "--batch-size", str(args.batch_size), "--out", out]
    if nproc == 1:
        cmd = [sys.executable, *base]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *base]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, env=env)
    return json.loads(Path(out, "result.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--method", default="fm", choices=("fm", "meanflow"))
    p.add_argument("--batch-size", type=int, default=256, help="global batch")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    single = launch(1, 2, args)
    double = launch(2, 1, args)
    ex = args.steps * args.batch_size
    comm = (double["seconds"] - double["seconds_no_comm"]) / double["seconds"]
    print(f"{args.method}, 3x256 MLP, global batch {args.batch_size}, {args.steps} timed steps\n")
    print("| layout | examples/s | relative |\n|---|---|---|")
    print(f"| 1 process x 2 threads | {ex / single['seconds']:.0f} | 1.00x |")
    print(f"| 2 processes x 1 thread (gloo DDP) | {ex / double['seconds']:.0f} | "
          f"{single['seconds'] / double['seconds']:.2f}x |")
    print(f"\nshare of the 2-process step time spent in gradient communication: {100 * max(comm, 0):.0f}%")


if __name__ == "__main__":
    main()
