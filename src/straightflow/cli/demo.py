"""`straightflow demo`: the main job at the defaults on built-in data, with pictures and a table.

Trains flow matching and MeanFlow on a 2-D toy set exactly as `straightflow train --method M --data D` would
(the library's defaults, training.config.METHOD_DEFAULTS), side by side on one thread each; evaluates each at
several NFE against held-out data (W2, precision and recall beside their noise floor), and writes sample
panels, trajectories and loss curves.
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
        "demo", help="train and evaluate flow matching and MeanFlow at the defaults, on a toy set or on digits",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("task", nargs="?", default="toy", choices=("toy", "digits", "translate"),
                   help="toy: 2-D flow matching vs MeanFlow (about 3 minutes on 2 CPU cores); digits: "
                   "class-conditional 8x8 digits at the image defaults (about 7 minutes); "
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
    from straightflow.cli.parallel import train_demo_runs
    from straightflow.evaluation import eval_table, evaluate_run
    from straightflow.plots.figures import plot_run_losses, plot_sample_panels, plot_trajectories
    from straightflow.report.tables import write_tables
    from straightflow.runs import load_run, sample_run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, panels, summary = {}, {}, {}
    data = None
    # exactly `train --method NAME --data D` (steps times --scale), side by side
    steps, seconds, timing = train_demo_runs({name: {"data.data": args.data} for name in DEMO_RUNS}, out,
                                             args.scale, True, not args.no_progress, tag=f"demo {args.data}")
    for name, specs in DEMO_RUNS.items():
        run_dir = out / name
        plot_run_losses(run_dir)
        run = load_run(run_dir)
        report = evaluate_run(run, specs, n=args.n, progress=not args.no_progress)
        tables[name] = eval_table(report)
        summary[name] = {**report.to_dict(), "train_seconds": seconds[name], "train_steps": steps[name]}
        data = data or run.load_data()
        for solver, k in specs:
            sol = sample_run(run, 2000, solver=solver, steps=k, return_trajectory=(solver != "dopri5"))
            panels[f"{name} {solver} NFE {sol.nfe}"] = sol.x.cpu()
            if solver != "dopri5" and k == max(s for _, s in specs if _ == solver):
                plot_trajectories(sol.trajectory.cpu(), out / f"trajectories_{name}.png",
                                  title=f"{name}: {solver}, {k} steps")
    plot_sample_panels(panels, data.heldout(2000), out / "samples.png")
    text = "\n\n".join([timing, *(t.text() for t in tables.values())])
    (out / "metrics.txt").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_tables(tables, out / "metrics", key="method")
    print(text)
    print(f"\n[demo] wrote {out}/samples.png, trajectories_*.png, metrics.txt/.csv/.md, metrics.json and the runs")
    return 0
