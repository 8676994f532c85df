"""Class-conditional image generation on scikit-learn's 8x8 digits: flow matching, MeanFlow, 2-RF + distill.

    python benchmarks/digits.py                          # 15 CPU minutes of training per model (the issue's budget)
    python benchmarks/digits.py --budget-minutes 4       # a quicker run (docs/images.md reports one)

Every model has the same U-Net and the same wall-clock training budget: it trains until the budget is
spent, its cosine learning-rate decay re-aimed at the end of the budget as it goes (EMA weights for
sampling), so a slower step (MeanFlow's JVP) means fewer steps. Rectified flow, when
straightflow.pipelines is present: 2-RF is trained on pairs from the flow-matching run's ODE, then
distilled to one Euler step on pairs from the 2-RF, each for as many steps as flow matching made in its
budget (same backbone and step), started from its parent's weights; pair generation is timed apart.

MeanFlow distillation ("mf-distill"): a one-step MeanFlow student whose target uses the flow-matching run's
marginal velocity (method.teacher), started from its weights, trained for the same budget again (so teacher
plus student cost 2x the teacher), guided at --distill-guidance (1 = unguided, compare with fm dopri5).

Prints, per method and sampler: NFE, feature-FID (the project's digit classifier's features, NOT Inception
FID; see docs/images.md), precision, recall (k = 3), class accuracy, training steps and steps/s, samples/s.
Writes OUT/results.json, OUT/table.txt, OUT/quality_vs_nfe.png and one grid per model (one row per class).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from straightflow.cli.demo_digits import DIGITS_COMMON, DIGITS_METHODS
from straightflow.image_evaluation import evaluate_images, write_image_grid
from straightflow.plots.images import plot_quality_vs_nfe
from straightflow.runs import load_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

# Shared by every model (data, backbone, optimiser, times) and per method: the digits demo's settings.
COMMON, METHODS = DIGITS_COMMON, DIGITS_METHODS
SPECS = {"fm": [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 8), ("dopri5", 1)],
         "meanflow": [("meanflow", 1), ("meanflow", 2)]}


def _overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def train_for(overrides: dict, out: Path, budget_s: float) -> dict:
    """Train until the wall-clock budget is spent, the cosine learning-rate schedule following the clock.

    After each slice of 25 steps the run's horizon (train.steps, which the cosine decay ends at) is set to
    the steps done plus the measured rate times the time left, so the decay ends when the budget does,
    however the machine's load varies. EMA weights are used for sampling.
    """
    if out.exists():
        shutil.rmtree(out)
    cfg = apply_overrides(RunConfig(), {**overrides, "train.steps": 10**9, "train.ckpt_every": 10**9})
    trainer = Trainer(cfg, out, progress=False)
    start = time.perf_counter()
    while trainer.step < trainer.cfg.train.steps:
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            break
        if trainer.step >= 50:  # (the warm-up does not depend on the horizon)
            horizon = max(trainer.step + 1, int(trainer.step * budget_s / elapsed))
            trainer.cfg = replace(trainer.cfg, train=replace(trainer.cfg.train, steps=horizon))
        trainer.fit(max_steps=25)
    seconds = time.perf_counter() - start
    trainer.save()
    return {"steps": trainer.step, "train_seconds": seconds, "steps_per_s": trainer.step / seconds}


def evaluate(name: str, run_dir: Path, specs, n: int, train: dict, out: Path, rows: list, guidance: float = 1.0):
    run = load_run(run_dir)
    report = evaluate_images(run, specs, n=n, guidance=guidance)
    for solver, k in dict.fromkeys([specs[0], specs[-1]]):  # the cheapest and the best sampler
        write_image_grid(run, out / f"grid_{name}_{solver}{k}.png".replace(" ", "_"), solver, k, guidance=guidance,
                         title=f"{name}: {solver}, {k} step(s), one row per class")
    for r in report.rows:
        rows.append({"method": name, "sampler": r.solver, "steps": r.steps, "nfe": r.nfe,
                     "feature_fid": r.feature_fid, "precision": r.precision, "recall": r.recall,
                     "class_accuracy": r.class_accuracy, "samples_per_s": r.samples_per_s, **train})
    print(f"[digits] {name}: evaluated {len(report.rows)} samplers (floor feature-FID {report.floor_fid:.3f}, "
          f"{report.floor_note})", flush=True)
    return report


def format_rows(rows: list, floor: float, floor_note: str, n: int) -> str:
    head = (f"{'method':<16}{'sampler':<10}{'NFE':>6}{'feat-FID':>10}{'prec':>7}{'recall':>8}{'class-acc':>10}"
            f"{'train steps':>12}{'steps/s':>9}{'samples/s':>11}")
    lines = [f"digits 8x8, class-conditional, n={n} samples per row; feature-FID floor of held-out test images "
             f"{floor:.3f} ({floor_note})", head]
    for r in rows:
        lines.append(f"{r['method']:<16}{r['sampler']:<10}{r['nfe']:>6.1f}{r['feature_fid']:>10.3f}"
                     f"{r['precision']:>7.3f}{r['recall']:>8.3f}{r['class_accuracy']:>10.3f}{r['steps']:>12d}"
                     f"{r['steps_per_s']:>9.2f}{r['samples_per_s']:>11.1f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-minutes", type=float, default=15.0, help="training wall-clock budget per model")
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation row")
    p.add_argument("--out", default="runs/bench-digits")
    p.add_argument("--methods", default="fm,meanflow,rf,mf-distill",
                   help="comma-separated subset of fm, meanflow, rf, mf-distill (rf and mf-distill need fm)")
    p.add_argument("--distill-guidance", type=float, default=1.0,
                   help="mf-distill: classifier-free guidance scale of the teacher distilled into the student")
    p.add_argument("--pairs", type=int, default=5000, help="rectified flow: (x0, x1) pairs per reflow/distill")
    p.add_argument("--fm-guidance", type=float, default=1.5,
                   help="also evaluate flow matching's dopri5 with this CFG weight (1 = skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every model (COMMON or METHODS), e.g. --set model.arch=dit")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = 60.0 * args.budget_minutes
    user = _overrides(args.set)
    if args.threads:
        user.setdefault("train.num_threads", args.threads)
    common = {**COMMON, **user}
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows: list[dict] = []
    floor = (float("nan"), "not measured")
    rates: dict[str, float] = {}
    for name in ("fm", "meanflow"):
        if name not in wanted and not (name == "fm" and ("rf" in wanted or "mf-distill" in wanted)):
            continue
        overrides = {**common, **METHODS[name], **{k: v for k, v in user.items() if k in METHODS[name]}}
        print(f"[digits] {name}: training for {args.budget_minutes} min", flush=True)
        train = train_for(overrides, out / name, budget)
        rates[name] = train["steps_per_s"]
        report = evaluate(name, out / name, SPECS[name], args.n, train, out, rows)
        if name == "fm" and args.fm_guidance != 1.0:  # classifier-free guidance, one batched 2B pass per step
            evaluate(f"fm cfg {args.fm_guidance:g}", out / name, [("dopri5", 1)], args.n, train, out, rows,
                     args.fm_guidance)
        floor = (report.floor_fid, report.floor_note)
    if "mf-distill" in wanted:
        teacher = str((out / "fm").resolve())
        overrides = {**common, **METHODS["meanflow"], "method.teacher": teacher, "train.init_from": teacher,
                     "method.omega": args.distill_guidance, "method.kappa": 0.0, "method.weight_power": 0.0,
                     "method.ratio": 1.0, "method.teacher_target": "lagrangian",
                     "data.coupling": "independent",  # the teacher's, which distill_meanflow inherits
                     **user}  # distill_meanflow's settings
        print(f"[digits] mf-distill: training for {args.budget_minutes} min from the fm teacher", flush=True)
        train = train_for(overrides, out / "mf-distill", budget)
        evaluate("mf-distill", out / "mf-distill", SPECS["meanflow"], args.n, train, out, rows)
    if "rf" in wanted:
        rows += rectified(out, budget, rates["fm"], args.pairs, args.n)
    table = format_rows(rows, *floor, args.n)
    print(table)
    (out / "table.txt").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "floor_feature_fid": floor[0], "floor": floor[1],
                                                  "budget_minutes": args.budget_minutes, "common": common,
                                                  "methods": METHODS}, indent=2))
    curves: dict[str, list] = {}
    for r in rows:
        curves.setdefault(f"{r['method']} ({r['sampler']})", []).append((r["nfe"], r["feature_fid"]))
    plot_quality_vs_nfe(curves, out / "quality_vs_nfe.png", reference=floor[0],
                        reference_label=f"held-out ({floor[1]})",
                        title="digits: feature-FID vs NFE (same U-Net, same budget)")
    print(f"[digits] wrote {out}/table.txt, results.json, quality_vs_nfe.png, grid_*.png")


def rectified(out: Path, budget: float, rate: float, n_pairs: int, n: int) -> list[dict]:
    """2-RF from the fm run, then its 1-step distillation; [] (with a note) if rectified flow is absent.

    Each stage: n_pairs pairs by dopri5 from its parent (timed apart), then rate * budget training steps
    started from the parent's weights (rate: the fm run's steps/s over its budget, the same backbone)."""
    try:
        from straightflow.pipelines.distill import distill
        from straightflow.pipelines.pairs import reflow_pairs_from_run
        from straightflow.pipelines.reflow import reflow
    except ImportError:
        print("[digits] rectified flow is not in this version of straightflow; skipping 2-RF + distill")
        return []
    rows: list[dict] = []
    steps = max(50, int(rate * budget))
    pair_options = {"solver": "dopri5", "rtol": 1e-4, "atol": 1e-4, "batch_size": 1000}
    stages = [("2-rf", out / "fm", out / "2rf", [("euler", 1), ("euler", 2)]),
              ("2-rf+distill", out / "2rf", out / "2rf-distill", [("euler", 1)])]
    for name, parent, run_dir, specs in stages:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        start = time.perf_counter()
        reflow_pairs_from_run(load_run(parent), n_pairs, run_dir / "pairs", **pair_options)
        pair_seconds = time.perf_counter() - start
        start = time.perf_counter()  # the pairs on disk are reused, so this is the training alone
        if name == "2-rf":
            reflow(parent, run_dir, n_pairs, train_steps=steps, pair_options=pair_options)
        else:
            distill(parent, run_dir, k=1, n_pairs=n_pairs, train_steps=steps, pair_options=pair_options)
        seconds = time.perf_counter() - start
        print(f"[digits] {name}: {n_pairs} pairs in {pair_seconds:.0f} s, {steps} training steps in {seconds:.0f} s",
              flush=True)
        train = {"steps": steps, "train_seconds": seconds, "steps_per_s": steps / seconds, "pair_seconds": pair_seconds}
        evaluate(name, run_dir, specs, n, train, out, rows)
    return rows


if __name__ == "__main__":
    main()
