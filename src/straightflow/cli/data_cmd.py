"""`straightflow data NAME`: export samples of a built-in data set."""

from __future__ import annotations

import argparse


def add_parser(subs) -> None:
    p = subs.add_parser(
        "data", help="export samples of a built-in data set",
        description="Write N samples of a toy data set to an .npy or .csv file (shape (N, 2)).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("name", help="data set name, e.g. moons")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help=".npy or .csv path")
    p.set_defaults(handler=run)


def run(args) -> int:
    import torch

    from straightflow.data.files import save_vectors
    from straightflow.data.source import resolve_data

    data = resolve_data(args.name)
    x = data.sample(args.n, torch.Generator().manual_seed(args.seed))
    path = save_vectors(args.out, x)
    print(f"wrote {tuple(x.shape)} samples of {args.name} to {path}")
    return 0
