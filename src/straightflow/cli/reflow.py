"""`straightflow reflow RUN --pairs N --out RUN2`: the next rectified flow, trained on RUN's own couplings."""

from __future__ import annotations

import argparse
from pathlib import Path

from straightflow.solvers.integrate import SOLVERS

# flag dest -> config field of the new run (its other settings come from RUN)
FLAGS = {"batch_size": "train.batch_size", "lr": "optim.lr", "seed": "train.seed", "device": "train.device"}


def add_pair_args(p: argparse.ArgumentParser, default_solver: str = "dopri5") -> None:
    """Flags of the pair generation (shared with `distill`)."""
    g = p.add_argument_group("pairs (x0 from RUN's source, x1 = RUN's ODE solution of x0)")
    g.add_argument("--solver", default=default_solver, choices=SOLVERS,
                   help="ODE solver for x1 = Flow(x0): dopri5 (adaptive) or a fixed-step method")
    g.add_argument("--solver-steps", type=int, default=100, help="steps of a fixed-step --solver")
    g.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance")
    g.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance")
    g.add_argument("--shard-size", type=int, default=10_000, help="pairs per shard file")
    g.add_argument("--pair-seed", type=int, default=0, help="seed of the x0 draws (shard i uses (seed, i))")
    g.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance of RUN (conditional)")


def add_training_args(p: argparse.ArgumentParser, default_steps: int) -> None:
    g = p.add_argument_group("training (defaults: RUN's settings)")
    g.add_argument("--steps", type=int, default=default_steps, help="training steps of the new run")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int, help="training seed")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field of the new run, e.g. --set optim.lr=5e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the training in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip loss.png, samples.png and trajectories.png")


def add_parser(subs) -> None:
    p = subs.add_parser(
        "reflow", help="rectify a flow: retrain it on the couplings it produces",
        description="Rectified flow (Liu et al. 2023): draw N x0 from RUN's source, solve RUN's ODE to get "
        "x1 = Flow(x0), store the pairs in OUT/pairs (resumable shards: rerun the same command after an "
        "interruption), then train OUT by flow matching on those fixed pairs, starting from RUN's weights. "
        "Repeat on OUT for 3-RF. Example: straightflow reflow runs/moons --pairs 50000 --out runs/moons-2rf",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="a flow-matching run folder (k-RF)")
    p.add_argument("--pairs", type=int, required=True, help="number of (x0, x1) pairs to generate")
    p.add_argument("--out", required=True, help="folder of the new run ((k+1)-RF), pairs in OUT/pairs")
    add_pair_args(p)
    add_training_args(p, default_steps=5000)
    p.set_defaults(handler=run)


def pair_options(args) -> dict:
    return {"solver": args.solver, "steps": args.solver_steps, "rtol": args.rtol, "atol": args.atol,
            "shard_size": args.shard_size, "seed": args.pair_seed, "guidance": args.guidance}


def overrides(args) -> dict:
    out = {key: getattr(args, dest) for dest, key in FLAGS.items() if getattr(args, dest) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def shard_printer(args):
    """Progress of the pair shards (rank 0 under torchrun); None with --no-progress."""
    from straightflow.progress import progress_callback
    from straightflow.training.distributed import world_info

    return progress_callback("pairs", unit="shards", enabled=not args.no_progress and world_info().is_main)


def run(args) -> int:
    from straightflow.cli.common import join_ranks, run_folder_lock
    from straightflow.pipelines.reflow import reflow

    join_ranks(args.device or "auto")  # under torchrun: each rank solves its own pair shards
    with run_folder_lock(args.out):  # one writer per run folder, pairs and training alike
        out = reflow(args.run, args.out, args.pairs, train_steps=args.steps, pair_options=pair_options(args),
                     overrides=overrides(args), resume=args.resume, progress=not args.no_progress,
                     on_shard=shard_printer(args), device=args.device or "auto")
        print(f"reflowed {args.run} on {args.pairs} pairs -> {out}")
        if not args.no_plots:
            write_plots(out)
    return 0


def write_plots(out: Path) -> None:
    """loss.png; for 2-D data samples.png (the run's own sampler) and trajectories.png (before / after)."""
    from straightflow.pipelines.reflow import plot_reflow_trajectories
    from straightflow.plots.figures import plot_run_losses, plot_samples
    from straightflow.runs import load_run, sample_run

    plot_run_losses(out)
    r = load_run(out)
    if r.dim != 2:
        return
    grid = r.config.method.time_sampler == "grid"
    solver, steps = ("euler", r.config.method.grid_steps) if grid else ("dopri5", 1)
    x = sample_run(r, 2000, solver=solver, steps=steps).x.cpu()
    data = r.load_data()
    title = f"{out.name}: {solver}" + (f" {steps} step(s)" if grid else "")
    plot_samples(x, data.heldout(2000), out / "samples.png", title=title)
    plot_reflow_trajectories(r, out / "trajectories.png")
