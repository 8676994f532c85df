"""`straightflow report RUN [RUN ...] --out report.html`: one self-contained HTML page comparing runs."""

from __future__ import annotations

import argparse

from straightflow.cli.common import parse_int_list


def add_parser(subs) -> None:
    p = subs.add_parser(
        "report", help="one self-contained HTML page comparing runs side by side",
        description="Write one HTML file (images inline, no network) with each run's configuration, loss "
        "curves, quality during training, samples at each NFE, trajectories and metric tables (eval.json, "
        "nll.json; vector runs without eval.json are evaluated quickly at --n points), runs side by side. "
        "Example: straightflow report runs/moons-fm runs/moons-mf --out report.html",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `straightflow train`")
    p.add_argument("--out", default="report.html", help="HTML file to write")
    p.add_argument("--nfe", type=parse_int_list, default=[1, 2, 4, 8],
                   help="NFEs to sample (and quickly evaluate) at, comma-separated")
    p.add_argument("--n", type=int, default=1000, help="points per sample panel and quick evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eval", action="store_true", help="do not evaluate runs that have no eval.json")
    p.add_argument("--device", default="cpu", help="where to sample: cpu | cuda | auto")
    p.add_argument("--title", default="straightflow report")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.report.html import write_report

    out = write_report(args.runs, args.out, nfes=args.nfe, n=args.n, seed=args.seed, evaluate=not args.no_eval,
                       device=args.device, progress=not args.no_progress, title=args.title)
    print(f"wrote {out} ({len(args.runs)} run(s), {out.stat().st_size / 1e6:.1f} MB)")
    return 0
