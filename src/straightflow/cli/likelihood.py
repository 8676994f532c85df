"""`straightflow likelihood RUN --data NAME_OR_FILE`: NLL per point (nats) and bits/dim, written to JSON."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from straightflow.solvers.divergence import ESTIMATORS, PROBE_KINDS
from straightflow.solvers.integrate import SOLVERS


def add_parser(subs) -> None:
    p = subs.add_parser(
        "likelihood", help="negative log-likelihood of data under a run (CNF change of variables)",
        description="Integrate the ODE backward from the data (t=1) to the source (t=0) jointly with the "
        "divergence: log p1(x) = log p0(x0) - int_0^1 div v(x_t, t) dt. Prints and writes the mean NLL in nats "
        "per point with its standard error, bits/dim for dequantised data, and the NFE. MeanFlow runs use their "
        "instantaneous velocity u(x, t, t). Example: straightflow likelihood runs/8g --data 8gaussians",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="toy set name (n held-out draws) or .npy/.csv file (its first n rows); "
                   "default: the run's own data, which must be unchanged since training (checked by SHA-256)")
    p.add_argument("--n", type=int, default=2000, help="number of points")
    p.add_argument("--solver", default="dopri5", choices=SOLVERS)
    p.add_argument("--steps", type=int, default=32, help="steps of a fixed-step solver")
    p.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance")
    p.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance")
    p.add_argument("--estimator", default="auto", choices=ESTIMATORS,
                   help="divergence: exact, hutchinson, or auto (exact for D <= 16)")
    p.add_argument("--probes", type=int, default=1, help="Hutchinson probes per point")
    p.add_argument("--probe-kind", default="rademacher", choices=PROBE_KINDS)
    p.add_argument("--dequantize", type=int, metavar="LEVELS", default=None,
                   help="data are LEVELS-level pixels scaled to [-1, 1]: add uniform noise of one level and "
                   "report bits/dim (default: on for image data, with the data set's own levels)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="held-out draw, probes and dequantisation noise")
    p.add_argument("--weights", default="ema", choices=("ema", "model"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default RUN/nll.json)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress of the batches")
    p.set_defaults(handler=run)


def _load_points(spec: str | None, n: int, seed: int, run):
    """(points (n, *D), their DataSource or None for a file): held-out draws of a named set, a file's first rows.

    spec None: the run's own data, refused in one line if they are missing or changed since training."""
    from straightflow.data.files import VECTOR_SUFFIXES, load_vectors
    from straightflow.data.source import resolve_data

    data = run.load_data() if spec is None else None  # checks the run's record of its data first
    spec = spec or run.config.data.data
    if Path(spec).suffix.lower() in VECTOR_SUFFIXES:
        return load_vectors(spec)[:n], None
    data = data or resolve_data(spec)
    return data.heldout(n, seed=seed), data


def run(args) -> int:
    import torch

    from straightflow.cli.common import join_ranks
    from straightflow.density import bits_per_dim, dequantize, run_log_likelihood
    from straightflow.runs import load_run
    from straightflow.solvers.likelihood import LikelihoodOptions
    from straightflow.training.distributed import world_info

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.probes < 1:
        raise ValueError(f"--probes must be >= 1, got {args.probes}")
    options = LikelihoodOptions(solver=args.solver, steps=args.steps, rtol=args.rtol, atol=args.atol,
                                estimator=args.estimator, probes_k=args.probes, probe_kind=args.probe_kind)
    join_ranks(args.device)  # under torchrun: points are split across ranks
    r = load_run(args.run, weights=args.weights, device=args.device)
    spec = args.data or r.config.data.data
    x, data = _load_points(args.data, args.n, args.seed, r)
    if x.dim() < 2 or math.prod(x.shape[1:]) != r.dim:
        raise ValueError(f"data '{spec}' has points of shape {tuple(x.shape[1:])} but the run has dimension {r.dim}")
    # Image sets carry their number of levels (256, or 17 for digits) and may already serve dequantised pixels.
    levels = args.dequantize or (getattr(data, "levels", 256) if x.dim() == 4 else None)
    if levels is not None:
        if levels < 2:
            raise ValueError(f"--dequantize takes a number of levels >= 2, got {levels}")
        if not getattr(data, "dequantize", False):
            x = dequantize(x, levels, generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    res = run_log_likelihood(r, x, batch_size=args.batch_size, options=options, seed=args.seed,
                             progress=not args.no_progress)
    seconds = time.perf_counter() - start
    nll = -res.log_prob.double()
    n = nll.shape[0]
    report = {
        "run": str(r.path), "data": spec, "n": n, "dim": r.dim,
        "nll": float(nll.mean()), "nll_stderr": float(nll.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "nfe": sum(res.nfe) / len(res.nfe), "nfe_per_batch": res.nfe, "batch_size": args.batch_size,
        "solver": args.solver, "steps": args.steps if args.solver != "dopri5" else None,
        "rtol": args.rtol, "atol": args.atol, "estimator": res.estimator, "probes": res.probes,
        "probe_kind": args.probe_kind if res.probes else None, "seconds": seconds,
        "seconds_per_1000": 1000 * seconds / n,
    }
    if levels is not None:
        report["dequantization"] = f"uniform, {levels} levels on [-1, 1]"
        report["bits_per_dim"] = float(bits_per_dim(report["nll"], r.dim, 2.0, levels))
    if data is not None and data.has_log_prob:  # the true density's NLL on the same points (its entropy estimate)
        report["data_nll"] = float(-data.log_prob(x.double()).mean())
    line = f"NLL {report['nll']:.4f} +- {report['nll_stderr']:.4f} nats/point over {n} points"
    if "bits_per_dim" in report:
        line += f", {report['bits_per_dim']:.4f} bits/dim ({report['dequantization']})"
    if "data_nll" in report:
        line += f"; true density on the same points {report['data_nll']:.4f}"
    if not world_info().is_main:  # under torchrun every rank holds the merged result; rank 0 reports it
        return 0
    print(line + f"  [{res.estimator}, {args.solver}, NFE {report['nfe']:.0f}, {seconds:.1f} s]")
    out = Path(args.out) if args.out else Path(args.run) / "nll.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0
