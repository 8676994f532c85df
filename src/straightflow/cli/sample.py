"""`straightflow sample RUN`: draw samples, write an .npy of shape (n, *D) and a picture."""

from __future__ import annotations

import argparse
from pathlib import Path

from straightflow.cli.common import add_solver_args, check_writable, solver_specs


def add_parser(subs) -> None:
    p = subs.add_parser(
        "sample", help="draw samples from a trained run",
        description="Sample a run: x0 from its source, carried to t=1 by the ODE solver (flow matching) or "
        "by average-velocity jumps (MeanFlow). Writes OUT (.npy of shape (n, D), or (n, C, H, W) with pixels in "
        "[-1, 1] for images) and OUT with .png (a grid for images).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder written by `straightflow train`")
    p.add_argument("--n", type=int, default=4000, help="number of samples")
    add_solver_args(p, multi=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", type=int, help="class label for a conditional run")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance weight (1 = off)")
    p.add_argument("--weights", default="ema", choices=("ema", "model"), help="EMA or raw weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--trajectory", action="store_true", help="also plot trajectories (2-D data)")
    p.add_argument("--mode-guidance", type=float, default=0.0, metavar="LAMBDA",
                   help="mode guidance: add LAMBDA h grad(-div v) to each step (0 = off)")
    p.add_argument("--with-logp", action="store_true",
                   help="also compute log p of each sample in the same pass; writes OUT_logp.npy")
    p.add_argument("--probes", type=int, default=1, help="Hutchinson probes for --mode-guidance / --with-logp")
    p.add_argument("--out", default="samples.npy", help="output .npy path")
    p.add_argument("--no-progress", action="store_true", help="hide the progress of the network evaluations")
    p.set_defaults(handler=run)


def expected_calls(solver: str, steps: int, average_velocity: bool) -> int | None:
    """Network calls a plain solve makes (steps x calls per step); None for dopri5 (adaptive)."""
    from straightflow.solvers.steppers import STEPPERS

    if average_velocity:
        return steps
    return steps * STEPPERS[solver].nfe if solver in STEPPERS else None


def run(args) -> int:
    import numpy as np

    from straightflow.plots.figures import plot_samples, plot_trajectories
    from straightflow.runs import load_run, sample_run

    out = Path(args.out)
    if out.suffix.lower() != ".npy":  # np.save would write OUT.npy while we print OUT
        raise ValueError(f"--out must name a .npy file, got {args.out!r} (e.g. {out.name}.npy)")
    check_writable(out)  # before sampling, not after
    r = load_run(args.run, weights=args.weights, device=args.device)
    specs = solver_specs(args, r.average_velocity, default_steps=[8])
    if len(specs) != 1:
        raise ValueError(f"sample takes one solver and one step count, got {specs}")
    solver, steps = specs[0]
    from straightflow.progress import track_calls

    plain = not (args.mode_guidance or args.with_logp)  # extras add derivative passes: no known call count
    total = expected_calls(solver, steps, r.average_velocity) if plain else None
    with track_calls(r.model, "sample", total, enabled=not args.no_progress, unit="NFE"):
        sol = sample_run(r, args.n, solver=solver, steps=steps, seed=args.seed, label=args.label,
                         guidance=args.guidance, return_trajectory=args.trajectory, rtol=args.rtol, atol=args.atol,
                         mode_guidance=args.mode_guidance, with_logp=args.with_logp, probes=args.probes)
    from straightflow.image_evaluation import clamp_images, is_image_run, write_sample_grid

    if is_image_run(r):  # images: (n, C, H, W) with pixels clamped to [-1, 1], plus a grid PNG
        sol = clamp_images(sol)
        write_sample_grid(sol.x.cpu(), Path(args.out).with_suffix(".png"), f"{solver} NFE {sol.nfe}", args.label)
    with out.open("wb") as f:  # exactly OUT, whatever the case of its suffix
        np.save(f, sol.x.cpu().numpy())
    print(f"wrote {args.n} samples ({solver}, NFE {sol.nfe}) to {out}")
    if args.with_logp:
        logp_path = out.with_name(out.stem + "_logp.npy")
        np.save(logp_path, sol.log_prob.cpu().numpy())
        print(f"wrote log p of each sample to {logp_path} (mean {float(sol.log_prob.mean()):.4f} nats)")
    if r.dim == 2:
        try:  # the picture draws held-out data under the samples; sampling itself never reads the data
            reference = r.load_data().heldout(min(args.n, 4000))
        except ValueError as err:
            reference = None
            print(f"no picture of the samples over the data: {err}")
        if reference is not None:
            plot_samples(sol.x.cpu(), reference, out.with_suffix(".png"), title=f"{solver} NFE {sol.nfe}")
        if args.trajectory:
            plot_trajectories(sol.trajectory.cpu(), out.with_name(out.stem + "_trajectories.png"))
    return 0
