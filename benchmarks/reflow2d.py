"""Rectified flow on 2-D tasks: the table of Liu et al. (ICLR 2023) for our toys, and the trajectory figure.

    python benchmarks/reflow2d.py                    # default budget (about 10-15 CPU minutes on 1 thread)
    python benchmarks/reflow2d.py --quick            # a smoke run in about a minute (numbers meaningless)

Per task (source -> data): 1-RF = flow matching on independent pairs; 2-RF = reflow of 1-RF on its pairs
(x0, Flow_1(x0)); 3-RF = reflow of 2-RF; 2-RF+distill = 2-RF distilled to one Euler step on its own pairs
(the pairs 3-RF trains on). For each coupling it prints

- crossing rate: share of the 2000 * 1999 / 2 pairs of straight segments x0 -> x1 that cross, x1 the rk4
  (32 steps) solution of x0 as in `straightflow eval` (1 Euler step for the distilled run),
- transport cost E |x1 - x0|^2 on --n points, x1 the dopri5 solution of x0 (1 Euler step for the distilled
  run); "independent" pairs x0 with an independent held-out data draw,
- for reference, the same for the exact OT re-pairing (squared cost) of the first 2000 independent pairs,
- straightness (Liu et al.'s S = E int |(x1 - x0) - v(x_t, t)|^2 dt, rk4 with 32 steps, 1000 paths),
- W2 / noise floor at Euler 1 and 2 steps and at dopri5 (NFE), the floor being the W2 between two
  independent held-out draws of --n points.

Then it checks the paper's trend (crossing rate falls >= 10x after 1-RF; 2-RF+distill at one step within
2x the noise floor) and writes OUT/<task>-trajectories.png: straight segments of independent pairs, then
the trajectories of 1-RF, 2-RF and 3-RF from the same x0 (before / after reflow).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from straightflow.evaluation import evaluate_run, reference_trajectory
from straightflow.methods.rectified import coupling_report, independent_coupling
from straightflow.paths.coupling import ot_coupling
from straightflow.pipelines.distill import distill
from straightflow.pipelines.reflow import reflow
from straightflow.plots.figures import plot_trajectory_panels
from straightflow.runs import load_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import CHECKPOINT, Trainer

SPECS = [("euler", 1), ("euler", 2), ("dopri5", 1)]


def _done(run_dir: Path, steps: int) -> bool:
    """A finished run of `steps` steps is reused (delete OUT or pass --fresh to retrain)."""
    if not (run_dir / CHECKPOINT).exists():
        return False
    return load_run(run_dir, device="cpu").step == steps


def train_1rf(source: str, data: str, steps: int, out: Path, seed: int) -> Path:
    run_dir = out / "1rf"
    if _done(run_dir, steps):
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = apply_overrides(RunConfig(), {
        "data.data": data, "data.source": source, "model.arch": "mlp", "train.steps": steps, "train.seed": seed,
        "train.ckpt_every": steps, "train.log_every": 500,
    })
    Trainer(cfg, run_dir, progress=False).fit()
    return run_dir


def _clean(run_dir: Path, steps: int) -> bool:
    """True if the run is finished; otherwise remove a stale or half-made run (its pairs are kept)."""
    if _done(run_dir, steps):
        return True
    for name in (CHECKPOINT, "metrics.jsonl", "config.json"):
        (run_dir / name).unlink(missing_ok=True)
    return False


def run_task(source: str, data: str, args: argparse.Namespace) -> tuple[list[dict], float, Path]:
    out = Path(args.out) / f"{source}-to-{data}"
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    rf1 = train_1rf(source, data, args.steps, out, args.seed)
    print(f"  1-RF trained ({time.perf_counter() - t0:.0f} s)", flush=True)
    pairs = {"solver": args.pair_solver, "steps": args.pair_steps, "shard_size": 10_000, "seed": args.seed,
             "rtol": 1e-5, "atol": 1e-5}
    over = {"train.ckpt_every": 1000, "train.log_every": 500}
    runs = {"1-RF": rf1}
    for k in (2, 3):
        run_dir = out / f"{k}rf"
        if not _clean(run_dir, args.reflow_steps):
            reflow(runs[f"{k - 1}-RF"], run_dir, args.pairs, train_steps=args.reflow_steps, pair_options=pairs,
                   overrides=over)
        runs[f"{k}-RF"] = run_dir
        print(f"  {k}-RF reflowed ({time.perf_counter() - t0:.0f} s)", flush=True)
    d_dir = out / "2rf-distill1"
    if not _clean(d_dir, args.distill_steps):
        distill(runs["2-RF"], d_dir, k=1, train_steps=args.distill_steps, pairs_dir=runs["3-RF"] / "pairs",
                overrides=over)
    runs["2-RF+distill"] = d_dir
    print(f"  2-RF distilled ({time.perf_counter() - t0:.0f} s)", flush=True)

    data_src, source_src = load_run(rf1).data_and_source()
    x0, x1 = independent_coupling(data_src, source_src, args.n, args.seed)
    rows = [{"name": "independent", **coupling_report(x0, x1).to_dict(), "straightness": None}]
    # reference: the exact OT re-pairing of the first 2000 independent pairs (squared cost). Quadratic OT
    # paths never meet at equal times, but their segments may still cross in the plane.
    ot = ot_coupling(x0[:2000], x1[:2000], None)
    rows.append({"name": "exact OT (2000 pts)", **coupling_report(ot.x0, ot.x1).to_dict(), "straightness": None})
    floor = None
    for name, run_dir in runs.items():
        distilled = name.endswith("distill")
        # eval's crossing rate: the reference solve's coupling on 2000 points (rk4, 32 steps; 1 Euler step for
        # the distilled run); transport cost: dopri5's (the distilled run: 1 Euler step's) coupling on n points
        report = evaluate_run(load_run(run_dir), [("euler", 1)] if distilled else SPECS, n=args.n, seed=args.seed)
        floor = report.noise_floor
        rows.append({
            "name": name, "crossing_rate": report.crossing_rate, "transport_cost": report.rows[-1].transport_cost,
            "straightness": None if distilled else report.straightness,
            "eval": {(r.solver, r.steps): (r.w2_ratio, r.nfe) for r in report.rows},
        })
    print(f"  evaluated ({time.perf_counter() - t0:.0f} s)", flush=True)

    n_paths = 300
    x0, x1 = x0[:n_paths], x1[:n_paths]
    panels = {"independent pairs": torch.stack([x0, x1])}
    times = {}
    for name in ("1-RF", "2-RF", "3-RF"):
        panels[name], times[name] = reference_trajectory(load_run(runs[name]), n_paths, args.seed)
    png = plot_trajectory_panels(panels, Path(args.out) / f"{source}-to-{data}-trajectories.png", n_paths=n_paths,
                                 title=f"{source} -> {data}: before and after reflow", times=times)
    return rows, floor, png


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_rows(task: str, rows: list[dict], floor: float) -> list[str]:
    lines = []
    for r in rows:
        ev = r.get("eval", {})

        def w2(spec: tuple[str, int], ev: dict = ev) -> str:
            if spec not in ev:
                return "-"
            ratio, nfe = ev[spec]
            return f"{ratio:.2f}x" + (f" ({nfe})" if spec[0] == "dopri5" else "")

        s = "-" if r["straightness"] is None else f"{r['straightness']:.3f}"
        lines.append(f"| {task} | {r['name']} | {_pct(r['crossing_rate'])} | {r['transport_cost']:.2f} | {s} | "
                     f"{w2(('euler', 1))} | {w2(('euler', 2))} | {w2(('dopri5', 1))} | {floor:.3f} |")
    return lines


def check_trend(task: str, rows: list[dict]) -> list[str]:
    by = {r["name"]: r for r in rows}
    fall = by["independent"]["crossing_rate"] / max(by["1-RF"]["crossing_rate"], 1e-12)
    one_step = by["2-RF+distill"]["eval"][("euler", 1)][0]
    costs = [by[k]["transport_cost"] for k in ("independent", "1-RF", "2-RF", "3-RF")]
    monotone = all(b <= a * 1.01 for a, b in zip(costs, costs[1:], strict=False))
    return [
        f"{task}: crossing rate independent / 1-RF = {fall:.0f}x (paper: >= 10x) "
        f"{'PASS' if fall >= 10 else 'FAIL'}",
        f"{task}: 2-RF+distill one-step W2 = {one_step:.2f}x floor (target <= 2x) "
        f"{'PASS' if one_step <= 2 else 'FAIL'}",
        f"{task}: transport cost independent -> 1-RF -> 2-RF -> 3-RF non-increasing (1% noise) "
        f"{'PASS' if monotone else 'FAIL'}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="gaussian:8gaussians,moons:8gaussians", help="source:data, comma-separated")
    p.add_argument("--steps", type=int, default=10_000, help="1-RF training steps")
    p.add_argument("--reflow-steps", type=int, default=5000, help="training steps of each reflow")
    p.add_argument("--distill-steps", type=int, default=3000, help="training steps of the distillation")
    p.add_argument("--pairs", type=int, default=50_000, help="pairs per reflow")
    p.add_argument("--pair-solver", default="dopri5", help="ODE solver for the pairs")
    p.add_argument("--pair-steps", type=int, default=100, help="steps of a fixed-step --pair-solver")
    p.add_argument("--n", type=int, default=4000, help="points for W2 and transport cost (crossings: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="runs/bench/reflow2d")
    p.add_argument("--fresh", action="store_true", help="retrain everything instead of reusing finished runs")
    p.add_argument("--quick", action="store_true", help="tiny budget, to check that the script runs")
    args = p.parse_args()
    if args.quick:
        args.steps, args.reflow_steps, args.distill_steps, args.pairs, args.n = 600, 300, 300, 4000, 1000
        args.out = args.out + "-quick"
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); 1-RF {args.steps} steps, reflows "
          f"{args.reflow_steps} steps on {args.pairs} pairs ({args.pair_solver}), distill {args.distill_steps} "
          f"steps; 3x256 SiLU MLP, batch 256; n={args.n}", flush=True)
    start = time.perf_counter()
    header = ("| task | coupling | crossing rate | transport cost | straightness | Euler 1 W2/floor | Euler 2 | "
              "dopri5 (NFE) | floor |\n|---|---|---|---|---|---|---|---|---|")
    lines, checks, pngs = [], [], []
    for task in args.tasks.split(","):
        source, _, data = task.partition(":")
        name = f"{source} -> {data}"
        print(f"{name}:", flush=True)
        rows, floor, png = run_task(source, data, args)
        lines += format_rows(name, rows, floor)
        checks += check_trend(name, rows)
        pngs.append(png)
    print(f"\n{header}\n" + "\n".join(lines))
    print("\n" + "\n".join(checks))
    print("\nfigures: " + ", ".join(map(str, pngs)))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
