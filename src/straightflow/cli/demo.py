"""`straightflow demo`: the main job on built-in data, in a few CPU minutes, with pictures and a table.

Trains flow matching and MeanFlow on a 2-D toy set exactly as `straightflow train --method M --data D` would
(the library's defaults, training.config.METHOD_DEFAULTS), evaluates each at several NFE against held-out data
(W2, precision and recall beside their noise floor), and writes sample panels, trajectories and loss curves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEMO_RUNS = {  # method: the samplers it is evaluated with
    "fm": [("euler", 1), ("euler", 4), ("euler", 16), ("dopri5", 1)],
    "meanflow": [("meanflow", 1), ("meanflow", 2)],
}


def add_parser(subs) -> None:
    p = subs.add_parser(
        "demo", help="train and evaluate flow matching and MeanFlow on a toy set or digits (a few CPU minutes)",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("task", nargs="?", default="toy", choices=("toy", "digits", "translate"),
                   help="toy: 2-D flow matching vs MeanFlow; digits: class-conditional images (8x8 digits); "
                   "translate: unpaired thin -> bold digits with 1-RF, 2-RF and distillation")
    p.add_argument("--data", default="checkerboard", help="toy data set")
    p.add_argument("--out", default="runs/demo", help="folder for runs, pictures and metrics")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the training steps (e.g. 0.1 to smoke-test)")
    p.add_argument("--n", type=int, default=4000, help="samples per evaluation row")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    if getattr(args, "task", "toy") == "digits":
        from straightflow.cli.demo_digits import run_digits

        return run_digits(args)
    if getattr(args, "task", "toy") == "translate":
        from straightflow.cli.demo_translate import run_translate

        return run_translate(args)
    from straightflow.evaluation import eval_table, evaluate_run
    from straightflow.plots.figures import plot_run_losses, plot_sample_panels, plot_trajectories
    from straightflow.report.tables import write_tables
    from straightflow.runs import load_run, sample_run
    from straightflow.training.config import RunConfig, apply_overrides, resolve_defaults
    from straightflow.training.trainer import CHECKPOINT, Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, panels, summary = {}, {}, {}
    data = None
    for name, specs in DEMO_RUNS.items():
        cfg = resolve_defaults(apply_overrides(RunConfig(), {"method.name": name, "data.data": args.data}))
        steps = max(10, int(cfg.train.steps * args.scale))
        cfg = apply_overrides(cfg, {"train.steps": steps})
        run_dir = out / name
        trainer = Trainer(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(),
                          progress=not args.no_progress)
        print(f"[demo] training {name} on {args.data} for {steps} steps")
        trainer.fit()
        plot_run_losses(run_dir)
        run = load_run(run_dir)
        report = evaluate_run(run, specs, n=args.n, progress=not args.no_progress)
        tables[name] = eval_table(report)
        summary[name] = report.to_dict()
        data = data or run.load_data()
        for solver, k in specs:
            sol = sample_run(run, 2000, solver=solver, steps=k, return_trajectory=(solver != "dopri5"))
            panels[f"{name} {solver} NFE {sol.nfe}"] = sol.x.cpu()
            if solver != "dopri5" and k == max(s for _, s in specs if _ == solver):
                plot_trajectories(sol.trajectory.cpu(), out / f"trajectories_{name}.png",
                                  title=f"{name}: {solver}, {k} steps")
    plot_sample_panels(panels, data.heldout(2000), out / "samples.png")
    text = "\n\n".join(t.text() for t in tables.values())
    (out / "metrics.txt").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_tables(tables, out / "metrics", key="method")
    print(text)
    print(f"\n[demo] wrote {out}/samples.png, trajectories_*.png, metrics.txt/.csv/.md, metrics.json and the runs")
    return 0
