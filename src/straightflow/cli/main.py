"""`straightflow` command line: one module per subcommand, each a thin layer over the Python API."""

from __future__ import annotations

import os

# Before torch loads OpenMP (the subcommand modules import torch): threads that spin while they wait for a core
# held by another process burn their time slices; passive waiting keeps a 2-thread run fast on a shared CPU
# (benchmarks/shared_cores.py). The user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import warnings
from pathlib import Path

from straightflow import __version__
from straightflow.cli import (
    config_cmd,
    data_cmd,
    demo,
    distill,
    evaluate,
    likelihood,
    reflow,
    report,
    sample,
    train,
    translate,
)

SUBCOMMANDS = (train, sample, evaluate, likelihood, reflow, distill, translate, data_cmd, config_cmd, demo, report)

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
  straightflow train --source digits-thin --data digits-bold --out runs/t2b   # unpaired image translation
  straightflow translate runs/t2b --input x.npy --steps 8 --out translated   # input | output grid
  straightflow report runs/moons-fm runs/moons-2rf --out report.html  # one HTML page, runs side by side
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


# Commands that write a run folder (--out) with checkpoints: an interruption names the last one.
RUN_WRITERS = ("train", "reflow", "distill")


def _last_checkpoint(args) -> str:
    """"; the last checkpoint is OUT/checkpoint.safetensors (step k) ..." for a run-writing command, else ""."""
    from straightflow.training.checkpoint import CHECKPOINT, read_meta

    out = getattr(args, "out", None)
    if args.command not in RUN_WRITERS or not out:
        return ""
    path = Path(out) / CHECKPOINT
    try:
        step = read_meta(path)["step"]
    except (ValueError, KeyError):
        return f"; no checkpoint in {out} yet"
    return f"; the last checkpoint is {path} (step {step}): continue with --resume"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():  # warnings print as one line, like errors
        warnings.showwarning = lambda message, *_, **__: print(
            f"straightflow {args.command}: warning: {message}", file=sys.stderr)
        code = _run(args)
    if __name__ != "__main__" and argv is not None:
        return code
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank leaves without the interpreter's teardown: gloo's threads, torn down by C++ static
        # destructors at exit, have aborted a rank now and then ("terminate called without an active exception")
        # after its work was done. Everything the run wrote is closed by now (atomic checkpoints, closed logs).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(args) -> int:
    """The subcommand's exit code: 0, 2 for bad input, 1 for a failure of the machine (a full disk, an I/O
    error, a non-finite loss), 130 for Ctrl-C; every failure is one line on stderr."""
    try:
        code = args.handler(args) or 0
        _shutdown_process_group()
    except ValueError as e:  # bad input: one line, no traceback
        print(f"straightflow {args.command}: error: {e}", file=sys.stderr)
        code = 2
    except OSError as e:  # ENOSPC, EIO, a folder gone: what was written stays intact (atomic writes)
        print(f"straightflow {args.command}: error: {e}{_last_checkpoint(args)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"straightflow {args.command}: interrupted{_last_checkpoint(args)}", file=sys.stderr)
        code = 130
    except RuntimeError as e:
        if type(e).__name__ != "NonFiniteLossError":
            raise
        print(f"straightflow {args.command}: error: {e}", file=sys.stderr)
        code = 1
    return code


if __name__ == "__main__":
    main()
