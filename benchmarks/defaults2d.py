"""The library defaults on every toy set: does a plain `straightflow train --method fm|meanflow --data D` win?

For each set, one flow-matching and one MeanFlow run with nothing but the data set and the method given
(the Trainer API with exactly the config the CLI builds from `--data D --method M`), then the project's
metric, computed as evaluation.evaluate_run does (W2 by exact OT between 4000 samples and the reference
held-out draw, divided by the noise floor, evaluation.noise_floor: the mean W2 of four fresh second draws
against the reference; and recall, k-NN coverage of the reference by the samples, which a collapse onto the
data's ridges cannot keep, beside a second draw's):
flow matching with dopri5, MeanFlow at 1 and 2 NFE. Prints one Markdown table with the training time of
each run (CPU seconds of the process, all its threads, so the OT assignment thread counts; and wall seconds).

    .venv/bin/python benchmarks/defaults2d.py --jobs 2                        # every toy set, the defaults
    .venv/bin/python benchmarks/defaults2d.py --sets moons,lissajous --steps 3000 --set model.time_features=raw
    .venv/bin/python benchmarks/defaults2d.py --methods fm --set fm:data.coupling=ot   # one method's overrides

`--set key=value` (repeatable) passes config overrides to every run, `--set fm:key=value` / `--set
meanflow:key=value` to one method's runs, so that candidate defaults can be compared; `--steps` overrides
train.steps. Runs go to runs/bench/defaults2d/<tag>/ (gitignored); `--json FILE` also writes every row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from straightflow.data.toy import TOY_DATASETS

METHODS = ("fm", "meanflow")
SPECS = {"fm": [("dopri5", 1)], "meanflow": [("meanflow", 1), ("meanflow", 2)]}
# The three first, then our harder sets, then the other FFJORD sets.
ORDER = ("moons", "8gaussians", "checkerboard", "lissajous", "spiral", "studentt", "grid25", "ringdot", "moons16d",
         "circles", "swissroll", "2spirals", "pinwheel")
assert sorted(ORDER) == sorted(TOY_DATASETS)
TARGET = 1.2  # a perfect sampler scores 1.0-1.2x the noise floor at n = 4000


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """--set items -> {"all" | "fm" | "meanflow": {key: value}}."""
    out: dict[str, dict[str, str]] = {"all": {}, "fm": {}, "meanflow": {}}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE or METHOD:KEY=VALUE, got {item!r}")
        scope, colon, key = key.strip().rpartition(":")
        scope = scope if colon else "all"
        if scope not in out:
            raise SystemExit(f"--set scope must be one of {', '.join(METHODS)}, got {scope!r}")
        out[scope][key] = value.strip()
    return out


def run_one(data_name: str, method: str, overrides: dict[str, str], out: str, n: int) -> dict:
    """Train one run at the defaults (plus overrides) and evaluate it; returns a JSON-able row."""
    import torch

    from straightflow.evaluation import noise_floor
    from straightflow.metrics.coverage import precision_recall
    from straightflow.metrics.distances import wasserstein2
    from straightflow.runs import load_run, sample_run
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    torch.set_num_threads(1)
    # What `straightflow train --data D --method M` builds (cli.common.config_from_args), plus the overrides.
    cfg = apply_overrides(RunConfig(), {"data.data": data_name, "method.name": method})
    cfg = apply_overrides(cfg, overrides)
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer = Trainer(cfg, out, progress=False)
    trainer.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # evaluation.evaluate_run's numbers (same held-out draw, floor, sampler seed and W2), without the
    # straightness and crossing-rate extras it also computes: W2 by exact OT / the noise floor.
    run = load_run(out, device="cpu")
    data = run.load_data()
    reference, second = data.heldout_pair(n, seed=1)
    floor = noise_floor(data, n, 1, (reference, second))
    floor_recall = precision_recall(reference, second)[1]
    rows = []
    for solver, steps in SPECS[method]:
        sol = sample_run(run, n, solver=solver, steps=steps, seed=0)
        w2 = wasserstein2(sol.x.cpu(), reference)
        precision, recall = precision_recall(reference, sol.x.cpu())
        rows.append({"solver": solver, "steps": steps, "nfe": sol.nfe, "w2": w2, "ratio": w2 / floor,
                     "precision": precision, "recall": recall})
    return {
        "set": data_name, "method": method, "overrides": overrides, "floor": floor, "floor_recall": floor_recall,
        "dim": run.dim,
        "steps": trainer.step, "coupling": trainer.cfg.data.coupling, "train_cpu_s": cpu, "train_wall_s": wall,
        "rows": rows,
    }


def _cell(res: dict | None, k: int) -> str:
    if res is None:
        return "-"
    r = res["rows"][k]
    mark = "" if r["ratio"] <= TARGET else " *"
    return f"{r['ratio']:.2f}x" + (f" ({r['nfe']})" if r["solver"] == "dopri5" else "") + mark


def table(results: dict[tuple[str, str], dict], sets: list[str]) -> str:
    lines = ["| set | dim | floor | FM dopri5 (NFE) | MF 1 NFE | MF 2 NFE | recall FM / MF 1 (floor) "
             "| train CPU s FM / MF | wall s FM / MF |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in sets:
        fm, mf = results.get((s, "fm")), results.get((s, "meanflow"))
        any_res = fm or mf
        if any_res is None:
            continue
        cpu = " / ".join(f"{r['train_cpu_s']:.0f}" if r else "-" for r in (fm, mf))
        wall = " / ".join(f"{r['train_wall_s']:.0f}" if r else "-" for r in (fm, mf))
        recall = " / ".join(f"{r['rows'][0]['recall']:.2f}" if r and "recall" in r["rows"][0] else "-"
                            for r in (fm, mf))
        floor_recall = f" ({any_res['floor_recall']:.2f})" if "floor_recall" in any_res else ""
        lines.append(f"| {s} | {any_res['dim']} | {any_res['floor']:.4f} | {_cell(fm, 0)} | {_cell(mf, 0)} | "
                     f"{_cell(mf, 1)} | {recall}{floor_recall} | {cpu} | {wall} |")
    summary = []
    for label, method, k in (("FM dopri5", "fm", 0), ("MF 1 NFE", "meanflow", 0), ("MF 2 NFE", "meanflow", 1)):
        ratios = [results[(s, method)]["rows"][k]["ratio"] for s in sets if (s, method) in results]
        if ratios:
            gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            summary.append(f"{label}: {sum(r <= TARGET for r in ratios)}/{len(ratios)} within {TARGET}x, "
                           f"worst {max(ratios):.2f}x, geometric mean {gmean:.2f}x")
    return "\n".join(lines) + "\n\n(* = above 1.2x the floor)  " + "; ".join(summary)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(ORDER), help="comma-separated toy sets (default: all)")
    p.add_argument("--methods", default=",".join(METHODS), help="fm,meanflow or one of them")
    p.add_argument("--steps", type=int, help="override train.steps for every run")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                   help="config override, e.g. model.time_features=raw or meanflow:data.coupling=ot (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one process and one thread each")
    p.add_argument("--n", type=int, default=4000, help="samples and held-out points for W2")
    p.add_argument("--tag", default="default", help="subfolder of runs/bench/defaults2d for the runs")
    p.add_argument("--json", help="also write every row to this JSON file (rewritten after each run)")
    p.add_argument("--md", help="also write the table to this file (rewritten after each run: partial results)")
    args = p.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    scoped = parse_sets(args.set)
    root = Path("runs/bench/defaults2d") / args.tag
    jobs = []
    for s in sets:
        for m in sorted(methods, key=lambda m: m != "meanflow"):
            ov = {**scoped["all"], **scoped[m]}
            if args.steps:
                ov["train.steps"] = str(args.steps)
            jobs.append((s, m, ov, str(root / f"{s}-{m}"), args.n))
    # Set by set (the longer MeanFlow run of a set first), so that a sweep cut short has both methods per set.
    print(f"{len(jobs)} runs, {args.jobs} at a time; overrides: {scoped}", flush=True)
    results: dict[tuple[str, str], dict] = {}
    start = time.perf_counter()
    if args.jobs <= 1:
        outs = (run_one(*j) for j in jobs)
        pool = None
    else:
        import multiprocessing

        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        outs = (f.result() for f in [pool.submit(run_one, *j) for j in jobs])
    for res in outs:
        results[(res["set"], res["method"])] = res
        cells = ", ".join(f"{r['solver']} {r['steps']}: {r['ratio']:.2f}x" for r in res["rows"])
        print(f"  {res['set']:<13}{res['method']:<9} {cells}  ({res['train_cpu_s']:.0f} CPU s, "
              f"{res['train_wall_s']:.0f} s wall, {res['steps']} steps, coupling {res['coupling']})", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(list(results.values()), indent=1))
        if args.md:
            Path(args.md).write_text(table(results, sets) + "\n")
    if pool is not None:
        pool.shutdown()
    print(f"\n{time.perf_counter() - start:.0f} s in all, torch threads 1 per run, {os.cpu_count()} cores\n")
    print(f"W2 / noise floor (exact OT, n = {args.n}; a perfect sampler scores 1.0-1.2x)\n")
    print(table(results, sets))


if __name__ == "__main__":
    main(sys.argv[1:])
