"""`straightflow` command line: one module per subcommand, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from straightflow import __version__
from straightflow.cli import config_cmd, data_cmd, demo, distill, evaluate, likelihood, reflow, sample, train

SUBCOMMANDS = (train, sample, evaluate, likelihood, reflow, distill, data_cmd, config_cmd, demo)

DESCRIPTION = """\
Flow Matching, Rectified Flow and MeanFlow: train, sample, evaluate.
Time convention: t=0 is the source (noise), t=1 the data; x_t = (1-t) x0 + t x1.

examples:
  straightflow demo                                    # the main job on built-in data, pictures + metrics
  straightflow train --method fm --data moons --steps 5000 --out runs/moons-fm
  straightflow sample runs/moons-fm --n 4000 --solver euler --steps 8 --out s.npy
  straightflow eval runs/moons-fm --solver euler --steps 1,2,4,8 --solver dopri5
  straightflow data checkerboard --n 10000 --out x.npy
  straightflow config --method meanflow --data moons    # the resolved settings, as TOML (--config reads it)
  straightflow reflow runs/moons-fm --pairs 50000 --out runs/moons-2rf  # rectified flow (1-RF -> 2-RF)
  straightflow distill runs/moons-2rf --out runs/moons-2rf-d             # one-step generation
  straightflow likelihood runs/moons-fm --data moons --out nll.json       # NLL by the change of variables
  straightflow demo digits                             # class-conditional images on 8x8 digits
  torchrun --standalone --nproc-per-node 2 -m straightflow train ...   # data-parallel training
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="straightflow", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"straightflow {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs.required = True
    for module in SUBCOMMANDS:
        module.add_parser(subs)
    return parser


def _shutdown_process_group() -> None:
    """Leave a torchrun process group cleanly: a gloo group torn down at interpreter exit can abort a rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args) or 0
        _shutdown_process_group()
    except ValueError as e:  # bad input: one line, no traceback
        print(f"straightflow {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except RuntimeError as e:
        if type(e).__name__ != "NonFiniteLossError":
            raise
        print(f"straightflow {args.command}: error: {e}", file=sys.stderr)
        code = 1
    if __name__ != "__main__" and argv is not None:
        return code
    sys.exit(code)


if __name__ == "__main__":
    main()
