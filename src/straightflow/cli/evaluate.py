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
    p.add_argument("run", help="run folder")
    p.add_argument("--n", type=int, default=4000, help="samples (and held-out points) per row")
    add_solver_args(p, multi=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="ema", choices=("ema", "model"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default RUN/eval.json)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.evaluation import evaluate_run, format_table
    from straightflow.runs import load_run

    r = load_run(args.run, weights=args.weights, device=args.device)
    specs = solver_specs(args, r.average_velocity, default_steps=[1, 2, 4, 8])
    report = evaluate_run(r, specs, n=args.n, seed=args.seed)
    print(format_table(report))
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    out.write_text(json.dumps(report.to_dict(), indent=2))
    print(f"wrote {out}")
    return 0
