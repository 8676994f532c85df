"""`straightflow demo digits`: class-conditional MeanFlow and flow matching on scikit-learn's 8x8 digits.

Both train as `straightflow train --method M --data digits --conditional` would, at the defaults for images
(training.config.METHOD_DEFAULTS; on a CPU a 0.19M U-Net, 6000 steps at batch 64), side by side on one thread
each: about 7 minutes on 2 cores, evaluation included (--scale multiplies the steps).
Writes OUT/<method>/ (the runs), OUT/grid_<method>_<sampler>.png (one row per class), OUT/quality_vs_nfe.png
and OUT/metrics.txt / metrics.json (feature-FID, precision, recall, class accuracy per sampler; see
docs/images.md for the protocol: the features are a digit classifier's, so this is not Inception FID).
"""

from __future__ import annotations

import json
from pathlib import Path

from straightflow.training.config import METHOD_DEFAULTS

# Shared by every digits run (this demo and benchmarks/digits.py): class-conditional digits at the defaults
# (training.config.METHOD_DEFAULTS: on a CPU a 0.19M U-Net at batch 64, one thread; larger on an accelerator).
DIGITS_COMMON = {"data.data": "digits", "data.conditional": True, "train.log_every": 100}
# The U-Net the defaults give on a CPU, named for the benchmarks that time it on other devices too.
CPU_UNET = {key: value for key, value in METHOD_DEFAULTS[("fm", "images-cpu")].items()
            if key in ("model.channels", "model.channel_mult", "train.batch_size")}
DIGITS_METHODS = {
    "fm": {"method.name": "fm"},
    # Unguided (omega = 1): guidance folded in at 1.5 bought class accuracy and cost feature-FID (docs/images.md).
    "meanflow": {"method.name": "meanflow"},
}
DIGITS_RUNS = {
    # name: (config overrides, eval specs); steps: the defaults
    "fm": (DIGITS_METHODS["fm"], [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 8), ("dopri5", 1)]),
    "meanflow": (DIGITS_METHODS["meanflow"], [("meanflow", 1), ("meanflow", 2)]),
}


def run_digits(args) -> int:
    """Train (side by side), evaluate and draw both runs; `args` carries out, scale, n and no_progress."""
    from straightflow.cli.parallel import train_demo_runs
    from straightflow.image_evaluation import evaluate_images, image_eval_table, write_image_grid
    from straightflow.plots.figures import plot_run_losses
    from straightflow.plots.images import plot_quality_vs_nfe
    from straightflow.runs import load_run

    out = Path("runs/demo-digits" if args.out == "runs/demo" else args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = min(args.n, 1000)
    tables, summary, curves, floor = {}, {}, {}, None
    runs = {name: {**DIGITS_COMMON, **overrides} for name, (overrides, _) in DIGITS_RUNS.items()}
    steps, seconds, timing = train_demo_runs(runs, out, args.scale, False, not args.no_progress,
                                             tag="demo digits")
    for name, (_, specs) in DIGITS_RUNS.items():
        run_dir = out / name
        plot_run_losses(run_dir)
        run = load_run(run_dir)
        report = evaluate_images(run, specs, n=n, progress=not args.no_progress)
        tables[name] = image_eval_table(report)
        summary[name] = {**report.to_dict(), "train_seconds": seconds[name], "train_steps": steps[name]}
        floor = report.floor_fid
        curves[f"{name} ({specs[0][0]})"] = [(r.nfe, r.feature_fid) for r in report.rows]
        for solver, k in dict.fromkeys([specs[0], specs[-1]]):  # the cheapest and the best sampler
            write_image_grid(run, out / f"grid_{name}_{solver}{k}.png", solver, k,
                             title=f"{name}: {solver}, {k} step(s), one row per class")
    plot_quality_vs_nfe(curves, out / "quality_vs_nfe.png", reference=floor, title="digits: feature-FID vs NFE")
    text = "\n\n".join([timing, *(t.text() for t in tables.values())])
    (out / "metrics.txt").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    from straightflow.report.tables import write_tables

    write_tables(tables, out / "metrics", key="method")
    print(text)
    print(f"\n[demo digits] wrote {out}/grid_*.png, quality_vs_nfe.png, metrics.txt/.csv/.md, metrics.json, runs")
    return 0
