"""`straightflow distill RUN --out RUN_D`: distil a flow to k Euler steps on its own pairs (rectified-flow
distillation), or with `--method meanflow` into a one-step average-velocity model taught by the flow."""

from __future__ import annotations

import argparse

from straightflow.cli.reflow import (
    add_pair_args,
    add_training_args,
    overrides,
    pair_options,
    shard_printer,
    write_plots,
)


def add_parser(subs) -> None:
    p = subs.add_parser(
        "distill", help="distil a flow to k steps (k = 1: one-step generation)",
        description="--method rf (default): rectified-flow distillation (Liu et al. 2023): pairs (x0, x1 = "
        "Flow(x0)) from RUN, then flow matching on them at the k-step Euler times t in {0, 1/k, ..., (k-1)/k} "
        "only, starting from RUN's weights; for k = 1 the loss is E|x1 - x0 - v(x0, 0)|^2. Sample and evaluate "
        "the result with --solver euler --steps k. --method meanflow: MeanFlow whose target uses RUN's marginal "
        "velocity v(x_s, s) in place of the conditional one (zero-variance target; --guidance distils RUN's "
        "classifier-free guidance), started from RUN's weights, on RUN's data; no pairs. Sample it with "
        "--steps 1. Examples: straightflow distill runs/moons-2rf --out runs/moons-2rf-d1; "
        "straightflow distill runs/digits-fm --method meanflow --guidance 1.5 --out runs/digits-mf1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="a flow-matching run folder (e.g. a 2-RF)")
    p.add_argument("--out", required=True, help="folder of the distilled run")
    p.add_argument("--method", choices=("rf", "meanflow"), default="rf",
                   help="rf: k-step rectified-flow distillation on pairs; meanflow: one-step MeanFlow student "
                   "taught by RUN's velocity (the pair flags are then unused, but --guidance)")
    p.add_argument("--k", type=int, default=1, help="Euler steps of the distilled sampler")
    p.add_argument("--pairs", type=int, default=50_000, help="number of pairs to generate into OUT/pairs")
    p.add_argument("--pairs-dir", help="reuse a complete pairs folder generated from RUN (e.g. RUN3/pairs of "
                   "`reflow RUN --out RUN3`) instead of generating new pairs")
    add_pair_args(p)
    add_training_args(p, default_steps=3000)
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.cli.common import run_folder_lock

    with run_folder_lock(args.out):  # one writer per run folder, pairs and training alike
        return _distill(args)


def _distill(args) -> int:
    from straightflow.cli.common import join_ranks
    from straightflow.pipelines.distill import distill

    if args.method == "meanflow":
        from straightflow.pipelines.distill import distill_meanflow

        out = distill_meanflow(args.run, args.out, train_steps=args.steps, guidance=args.guidance,
                               overrides=overrides(args), resume=args.resume, progress=not args.no_progress)
        print(f"distilled {args.run} into the one-step MeanFlow model {out}; sample it with --steps 1")
        if not args.no_plots:
            write_plots(out)
        return 0
    join_ranks(args.device or "auto")  # under torchrun: each rank solves its own pair shards
    out = distill(args.run, args.out, k=args.k, n_pairs=args.pairs, train_steps=args.steps,
                  pairs_dir=args.pairs_dir, pair_options=pair_options(args), overrides=overrides(args),
                  resume=args.resume, progress=not args.no_progress, on_shard=shard_printer(args),
                  device=args.device or "auto")
    print(f"distilled {args.run} to {args.k} step(s) -> {out}; sample it with --solver euler --steps {args.k}")
    if not args.no_plots:
        write_plots(out)
    return 0
