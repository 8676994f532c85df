"""MeanFlow against flow matching on 2-D toy sets: same network (3x256 SiLU MLP), same training budget.

For each set: flow matching (independent pairs), MeanFlow (independent pairs) and MeanFlow on minibatch-OT
pairs (data.coupling=ot), trained with the project's Trainer and scored by evaluation.evaluate_run:
W2 / noise floor for MeanFlow at 1 and 2 NFE, for FM at Euler 1 step and dopri5 (with its NFE).
Then the cost of one MeanFlow training step over one FM step (same MLP, batch 256), per JVP mode, timed
interleaved in one process (median of repeats).

    .venv/bin/python benchmarks/meanflow2d.py --quick              # smoke run
    .venv/bin/python benchmarks/meanflow2d.py --steps 10000        # the table in docs/meanflow.md

Runs are written under runs/bench/meanflow2d/ (gitignored). Extra MeanFlow settings: --mf key=value ...
(dotted config keys, e.g. --mf method.ratio=0.25 method.weight_power=1.0).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from straightflow.evaluation import evaluate_run
from straightflow.methods.flow_matching import FlowMatching
from straightflow.methods.mean_flow import JVP_MODES, MeanFlow
from straightflow.methods.time_sampling import UniformTime
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.paths.schedule import get_scheduler
from straightflow.runs import load_run
from straightflow.training.config import PRESETS, RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

SETS = ("moons", "8gaussians", "checkerboard")
ROOT = Path("runs/bench/meanflow2d")


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} is not key=value")
        out[key] = value
    return out


def train_and_eval(name: str, overrides: dict, specs: list[tuple[str, int]], n: int) -> tuple[dict, float]:
    cfg = apply_overrides(RunConfig(), overrides)
    out = ROOT / name
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    Trainer(cfg, out, progress=False).fit()
    seconds = time.perf_counter() - start
    report = evaluate_run(load_run(out, device="cpu"), specs, n=n)
    rows = {(r.solver, r.steps): r for r in report.rows}
    return {"floor": report.noise_floor, "rows": rows}, seconds


def step_costs(repeats: int, steps: int, threads: int, fd_eps: float = 1e-3) -> dict[str, float]:
    """Median seconds per training step (loss, backward, clip, AdamW) for FM and each MeanFlow JVP mode."""
    torch.set_num_threads(threads)
    path = AffinePath(get_scheduler("linear"))
    g = torch.Generator().manual_seed(0)
    batch = CoupledBatch(torch.randn(256, 2, generator=g), torch.randn(256, 2, generator=g) * 2, None)
    setups = {"fm": (MLP(2, 256, 3, n_times=1), FlowMatching(path, UniformTime()))}
    for mode in JVP_MODES:
        setups[mode] = (MLP(2, 256, 3, n_times=2), MeanFlow(path, UniformTime(), jvp=mode, fd_eps=fd_eps))
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in setups.items()}

    def run(key: str, k: int) -> float:
        model, method = setups[key]
        gen = torch.Generator().manual_seed(1)
        t0 = time.perf_counter()
        for _ in range(k):
            loss = method.loss(model, batch, gen).loss.mean()
            opts[key].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opts[key].step()
        return (time.perf_counter() - t0) / k

    for key in setups:  # warm-up
        run(key, 5)
    times: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(repeats):  # interleaved: drifts in machine load hit every method alike
        for key in setups:
            times[key].append(run(key, steps))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated toy sets")
    p.add_argument("--steps", type=int, default=10000, help="training steps for every run")
    p.add_argument("--quick", action="store_true", help="smoke run: 300 steps, n=1000, short timing")
    p.add_argument("--n", type=int, default=4000, help="samples for W2")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--mf", nargs="*", default=[], help="extra MeanFlow overrides key=value")
    p.add_argument("--skip", default="", help="comma-separated of fm,mf,mf_ot,timing to skip")
    args = p.parse_args(argv)
    steps, n = (300, 1000) if args.quick else (args.steps, args.n)
    skip = set(filter(None, args.skip.split(",")))
    sets = [s for s in args.sets.split(",") if s]
    base = {"train.steps": steps, "train.num_threads": args.threads, "data.prefetch": False, "model.arch": "mlp",
            "model.time_features": "fourier",  # the features docs/benchmarks.md's table was measured with
            "train.log_every": max(1, steps // 20), "train.ckpt_every": steps}
    mf = {**PRESETS["toy2d-meanflow"], **base, **parse_overrides(args.mf)}
    mf["train.steps"] = steps
    print(f"steps {steps}, n {n}, threads {args.threads}, "
          f"MeanFlow overrides {parse_overrides(args.mf) or '-'}", flush=True)
    results = {}
    for data in sets:
        res = {}
        if "fm" not in skip:
            res["fm"] = train_and_eval(f"{data}_fm", {**base, "data.data": data, "method.name": "fm"},
                                       [("euler", 1), ("dopri5", 1)], n)
        if "mf" not in skip:
            # the preset pairs by OT; this column is the independent-pairs one
            res["mf"] = train_and_eval(f"{data}_mf", {**mf, "data.data": data, "data.coupling": "independent"},
                                       [("meanflow", 1), ("meanflow", 2)], n)
        if "mf_ot" not in skip:
            res["mf_ot"] = train_and_eval(f"{data}_mf_ot", {**mf, "data.data": data, "data.coupling": "ot"},
                                          [("meanflow", 1), ("meanflow", 2)], n)
        results[data] = res
        print(f"  {data}: " + ", ".join(f"{k} {v[1]:.0f}s" for k, v in res.items()), flush=True)

    print()
    print(f"W2 / noise floor (n = {n}); lower is better, ~1.0-1.2 is as good as a fresh data draw")
    head = (f"{'set':<13}{'floor':>7}{'FM E1':>8}{'FM dopri5':>14}{'MF 1':>7}{'MF 2':>7}{'MF-OT 1':>9}"
            f"{'MF-OT 2':>9}  train s (fm/mf/mf-ot)")
    print(head)
    for data, res in results.items():
        def ratio(key, spec, res=res):
            return f"{res[key][0]['rows'][spec].w2_ratio:.2f}" if key in res else "-"
        floor = next(iter(res.values()))[0]["floor"] if res else float("nan")
        dop = (f"{res['fm'][0]['rows'][('dopri5', 1)].w2_ratio:.2f} ({res['fm'][0]['rows'][('dopri5', 1)].nfe})"
               if "fm" in res else "-")
        secs = "/".join(f"{res[k][1]:.0f}" if k in res else "-" for k in ("fm", "mf", "mf_ot"))
        print(f"{data:<13}{floor:>7.4f}{ratio('fm', ('euler', 1)):>8}{dop:>14}"
              f"{ratio('mf', ('meanflow', 1)):>7}{ratio('mf', ('meanflow', 2)):>7}"
              f"{ratio('mf_ot', ('meanflow', 1)):>9}{ratio('mf_ot', ('meanflow', 2)):>9}  {secs}")

    if "timing" not in skip:
        reps, k = (3, 10) if args.quick else (7, 40)
        cost = step_costs(reps, k, args.threads)
        print()
        print(f"training step cost, MLP 3x256, batch 256, {args.threads} thread(s), median of {reps} x {k} steps")
        print(f"{'method':<28}{'ms/step':>9}{'x FM':>7}")
        for key, sec in cost.items():
            label = "fm" if key == "fm" else f"meanflow {key}"
            print(f"{label:<28}{sec * 1e3:>9.2f}{sec / cost['fm']:>7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
