"""Flow matching on 2-D toys: sample quality vs NFE and training speed, independent vs minibatch-OT pairs.

    python benchmarks/toy2d.py                      # default budget (about 1-2 CPU minutes per set and coupling)
    python benchmarks/toy2d.py --steps 2000 --sets moons   # quick look

Prints, per set and coupling: W2 / noise floor at Euler NFE 1, 2, 4, 8 and at dopri5 (with its NFE),
the noise floor itself (W2 between two independent 4000-point held-out draws), and training steps/s.
The cost of an OT step over a plain one, with and without a free core: benchmarks/ot_cost.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from straightflow.evaluation import evaluate_run
from straightflow.runs import load_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

SPECS = [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 8), ("dopri5", 1)]


def train(data: str, coupling: str, steps: int, out: Path, seed: int) -> tuple[Path, float]:
    cfg = apply_overrides(RunConfig(), {
        "data.data": data, "data.coupling": coupling, "train.steps": steps, "train.seed": seed,
        "model.time_features": "fourier",  # the features docs/benchmarks.md's table was measured with
        "train.ckpt_every": steps, "train.log_every": 500,
    })
    run_dir = out / f"{data}-{coupling}"
    if (run_dir / "checkpoint.safetensors").exists():
        import shutil

        shutil.rmtree(run_dir)
    trainer = Trainer(cfg, run_dir, progress=False)
    start = time.perf_counter()
    trainer.fit()
    return run_dir, steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="moons,8gaussians,checkerboard")
    p.add_argument("--couplings", default="independent,ot")
    p.add_argument("--steps", type=int, default=15000, help="training steps per run")
    p.add_argument("--n", type=int, default=4000, help="samples and held-out points for W2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench/toy2d")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is robust: 2 threads spin-wait badly when another process shares the cores)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, batch 256, "
          f"3x256 SiLU MLP, n={args.n}")
    header = ("| set | coupling | floor | Euler 1 | Euler 2 | Euler 4 | Euler 8 | dopri5 (NFE) | steps/s |\n"
              "|---|---|---|---|---|---|---|---|---|")
    rows = []
    for data in args.sets.split(","):
        for coupling in args.couplings.split(","):
            run_dir, rate = train(data, coupling, args.steps, out, args.seed)
            report = evaluate_run(load_run(run_dir), SPECS, n=args.n)
            r = report.rows
            rows.append(
                f"| {data} | {coupling} | {report.noise_floor:.3f} | "
                + " | ".join(f"{x.w2_ratio:.2f}x" for x in r[:4])
                + f" | {r[4].w2_ratio:.2f}x ({r[4].nfe}) | {rate:.0f} |"
            )
            print(rows[-1], flush=True)
    print("\nW2 / noise floor (lower is better; a perfect sampler scores 1.0-1.2x)\n")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
