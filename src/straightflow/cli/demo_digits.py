"""`straightflow demo digits`: class-conditional MeanFlow and flow matching on scikit-learn's 8x8 digits.

Both models get the same small U-Net; each trains for a few CPU minutes (--scale multiplies the steps).
Writes OUT/<method>/ (the runs), OUT/grid_<method>_<sampler>.png (one row per class), OUT/quality_vs_nfe.png
and OUT/metrics.txt / metrics.json (feature-FID, precision, recall, class accuracy per sampler; see
docs/images.md for the protocol: the features are a digit classifier's, so this is not Inception FID).
"""

from __future__ import annotations

import json
from pathlib import Path

# Shared by every digits run (this demo and benchmarks/digits.py): data, backbone, optimiser, times.
DIGITS_COMMON = {
    "data.data": "digits", "data.conditional": True, "model.arch": "unet", "model.channels": 16,
    "model.channel_mult": "1,2", "model.num_res_blocks": 1, "train.batch_size": 64, "optim.lr": 2e-3,
    "optim.warmup_steps": 100, "optim.ema_decay": 0.999, "method.time_sampler": "uniform",
    "method.label_dropout": 0.1, "train.log_every": 100,
    "train.num_threads": 1,  # a 0.18M-parameter U-Net on 8x8 images gains little from a second thread
}
DIGITS_METHODS = {
    "fm": {"method.name": "fm"},
    # Guidance folded into training at scale omega = 1.5 (1 NFE at sampling). The exact JVP by the U-Net's own
    # tangent pass: on this U-Net its step costs 1.4-1.5x a flow-matching step on the CPU, below the
    # finite-difference JVP's 1.6x (benchmarks/jvp_cost.py).
    "meanflow": {"method.name": "meanflow", "method.ratio": 0.5, "method.weight_power": 1.0,
                 "method.weight_eps": 1e-3, "method.jvp": "tangent", "method.omega": 1.5},
}
DIGITS_RUNS = {
    # name: (config overrides, eval specs)
    "meanflow": ({**DIGITS_METHODS["meanflow"], "train.steps": 2000}, [("meanflow", 1), ("meanflow", 2)]),
    "fm": ({**DIGITS_METHODS["fm"], "train.steps": 1500}, [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 8),
                                                            ("dopri5", 1)]),
}


def run_digits(args) -> int:
    """Train, evaluate and draw both runs; `args` carries out, scale, n and no_progress."""
    from straightflow.image_evaluation import evaluate_images, image_eval_table, write_image_grid
    from straightflow.plots.figures import plot_run_losses
    from straightflow.plots.images import plot_quality_vs_nfe
    from straightflow.runs import load_run
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    out = Path("runs/demo-digits" if args.out == "runs/demo" else args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = min(args.n, 1000)
    tables, summary, curves, floor = {}, {}, {}, None
    for name, (overrides, specs) in DIGITS_RUNS.items():
        steps = max(10, int(overrides["train.steps"] * args.scale))
        cfg = apply_overrides(RunConfig(), {**DIGITS_COMMON, **overrides, "train.steps": steps})
        run_dir = out / name
        trainer = Trainer(cfg, run_dir, resume=(run_dir / "checkpoint.safetensors").exists(),
                          progress=not args.no_progress)
        print(f"[demo digits] training class-conditional {name} for {steps} steps", flush=True)
        trainer.fit()
        plot_run_losses(run_dir)
        run = load_run(run_dir)
        report = evaluate_images(run, specs, n=n, progress=not args.no_progress)
        tables[name] = image_eval_table(report)
        summary[name] = report.to_dict()
        floor = report.floor_fid
        curves[f"{name} ({specs[0][0]})"] = [(r.nfe, r.feature_fid) for r in report.rows]
        for solver, k in dict.fromkeys([specs[0], specs[-1]]):  # the cheapest and the best sampler
            write_image_grid(run, out / f"grid_{name}_{solver}{k}.png", solver, k,
                                 title=f"{name}: {solver}, {k} step(s), one row per class")
    plot_quality_vs_nfe(curves, out / "quality_vs_nfe.png", reference=floor, title="digits: feature-FID vs NFE")
    text = "\n\n".join(t.text() for t in tables.values())
    (out / "metrics.txt").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    from straightflow.report.tables import write_tables

    write_tables(tables, out / "metrics", key="method")
    print(text)
    print(f"\n[demo digits] wrote {out}/grid_*.png, quality_vs_nfe.png, metrics.txt/.csv/.md, metrics.json, runs")
    return 0
