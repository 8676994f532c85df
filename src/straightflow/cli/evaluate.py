"""`straightflow eval RUN`: a table of sample quality per solver and step count; writes RUN/eval.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from straightflow.cli.common import add_solver_args, solver_specs


def add_parser(subs) -> None:
    p = subs.add_parser(
        "eval", help="measure sample quality against held-out data",
        description="Sample with each solver/steps and report NFE, W2 (exact OT) beside the W2 noise floor "
        "(two independent held-out draws of the same size), RBF MMD, the transport cost E|x1-x0|^2 of "
        "the induced coupling, and the flow's straightness. Example: "
        "straightflow eval RUN --solver euler --steps 1,2,4,8 --solver dopri5",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder (with --coupling-only: a data set, e.g. 8gaussians)")
    p.add_argument("--n", type=int, default=4000, help="samples (and held-out points) per row")
    add_solver_args(p, multi=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="ema", choices=("ema", "model"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default RUN/eval.json)")
    p.add_argument("--guidance", type=float, default=1.0,
                   help="images, conditional velocity runs: classifier-free guidance weight (1 = off)")
    p.add_argument("--true-fid", action="store_true",
                   help="images: also Inception FID, if torchmetrics or clean-fid and their weights are present")
    p.add_argument("--plot", nargs="?", const="", metavar="PNG",
                   help="2-D: also draw trajectories beside the parent run's (before/after reflow), "
                   "default RUN/trajectories.png")
    p.add_argument("--coupling-only", action="store_true",
                   help="no model: crossing rate and transport cost of independent pairs of --source and RUN "
                   "(a data set)")
    p.add_argument("--source", default="gaussian", help="with --coupling-only: the source distribution")
    p.add_argument("--data", help="compare with these data (a data set or a .npy/.csv file) instead of the run's "
                   "own, which must be unchanged since training (checked by SHA-256)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress of the rows")
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.evaluation import eval_table, evaluate_run
    from straightflow.runs import load_run

    if args.coupling_only:
        return _coupling_only(args)
    from straightflow.cli.common import check_writable

    if args.out or Path(args.run).is_dir():  # before the work, not after (a missing run is load_run's error)
        check_writable(Path(args.out) if args.out else Path(args.run) / "eval.json")
    r = load_run(args.run, weights=args.weights, device=args.device)
    specs = solver_specs(args, r.average_velocity, default_steps=[1, 2, 4, 8])
    from straightflow.image_evaluation import is_image_run

    if is_image_run(r):  # images: feature-FID, precision/recall, class accuracy instead of the W2 table
        return _evaluate_images(args, r, specs)
    report = evaluate_run(r, specs, n=args.n, seed=args.seed, data=r.load_data(args.data),
                          progress=not args.no_progress, guidance=args.guidance)
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    _write(report, eval_table(report), out)
    if args.plot is not None:
        from straightflow.pipelines.reflow import plot_reflow_trajectories

        png = plot_reflow_trajectories(r, args.plot or Path(args.run) / "trajectories.png", seed=args.seed)
        print(f"wrote {png}")
    return 0


def _coupling_only(args) -> int:
    """Crossing rate and transport cost of independent pairs (x0 ~ source, x1 ~ data)."""
    import torch

    from straightflow.data.source import resolve_data, resolve_source
    from straightflow.methods.rectified import coupling_report, independent_coupling

    if args.n < 2:
        raise ValueError(f"--n must be >= 2 to count crossings, got {args.n}")
    data = resolve_data(args.run)
    source = resolve_source(args.source, data.shape)
    x0, x1 = independent_coupling(data, source, args.n, seed=args.seed)
    report = coupling_report(x0, x1)
    crossing = "n/a (not 2-D)" if report.crossing_rate is None else (
        f"{100 * report.crossing_rate:.3f}% (on {report.crossing_points} points)")
    print(f"independent pairs {args.source} -> {args.run}, n={report.n}: transport cost "
          f"{report.transport_cost:.4f}, crossing rate {crossing}")
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.run, "source": args.source, **report.to_dict()}, indent=2))
        print(f"wrote {args.out}")
    if args.plot is not None and x0.shape[1:] == (2,):
        from straightflow.plots.figures import plot_trajectory_panels

        png = plot_trajectory_panels({f"independent {args.source} -> {args.run}": torch.stack([x0, x1])},
                                     args.plot or "coupling.png")
        print(f"wrote {png}")
    return 0


def _evaluate_images(args, r, specs) -> int:
    """Image runs: feature-FID, precision, recall, class accuracy per (solver, steps); see image_evaluation."""
    from straightflow.data.images import is_image_spec
    from straightflow.image_evaluation import evaluate_images, image_eval_table

    if is_image_spec(r.config.data.source):  # image-to-image: held-out source images, translated
        from straightflow.pipelines.translate import evaluate_translation

        if args.data:
            raise ValueError("--data is for runs from noise; an image-to-image run is scored against its own "
                             "target set (its held-out source images are the inputs)")
        name = Path(args.run).name
        report = evaluate_translation([(name, r, solver, k) for solver, k in specs], n=args.n, seed=args.seed,
                                      progress=not args.no_progress)
        _write(report, report.table(), Path(args.out) if args.out else Path(args.run) / "eval.json")
        return 0
    report = evaluate_images(r, specs, n=args.n, seed=args.seed, guidance=args.guidance, data=r.load_data(args.data),
                             with_true_fid=args.true_fid, progress=not args.no_progress)
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    _write(report, image_eval_table(report), out)
    return 0


def _write(report, table, out: Path) -> None:
    """Print the table; write the report as JSON to `out` and the table beside it as CSV and Markdown."""
    print(table.text())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_dict(), indent=2))
    csv_path, md_path = table.write(out)
    print(f"wrote {out}, {csv_path.name} and {md_path.name}")
