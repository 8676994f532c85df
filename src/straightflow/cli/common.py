"""Argument helpers shared by the subcommands (solver specs, config flags, joining torchrun's ranks)."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from straightflow.solvers.integrate import SOLVERS
from straightflow.training.config import PRESETS, RunConfig, apply_overrides, load_toml

__all__ = [
    "add_solver_args", "solver_specs", "add_config_args", "config_from_args", "parse_int_list", "join_ranks",
    "run_folder_lock", "check_writable",
]


def parse_int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"steps must be integers >= 1, got {text!r}")
    return values


class _SolverAction(argparse.Action):
    """--solver NAME opens a new spec; --steps LIST applies to the latest one (order on the line matters)."""

    def __call__(self, parser, namespace, values, option_string=None):
        specs = list(getattr(namespace, "specs", None) or [])
        if option_string == "--solver":
            specs.append([values, None])
        else:
            if not specs or specs[-1][1] is not None:
                specs.append([None, values])
            else:
                specs[-1][1] = values
        namespace.specs = specs


def join_ranks(device: str) -> None:
    """Under torchrun, join the process group now, with the backend of `device` (gloo on the CPU, nccl on
    CUDA, one GPU per rank), so that work before any training (pair shards, likelihood batches) is split
    across the ranks; a single process is left alone."""
    from straightflow.training.device import pick_device
    from straightflow.training.distributed import init_distributed

    init_distributed(pick_device(device).type)


def add_solver_args(p: argparse.ArgumentParser, multi: bool) -> None:
    names = ", ".join(list(SOLVERS) + ["meanflow"])
    p.add_argument("--solver", action=_SolverAction, dest="specs", help=f"ODE solver: {names} "
                   "(MeanFlow runs always take average-velocity jumps)" + ("; repeatable" if multi else ""))
    p.add_argument("--steps", action=_SolverAction, dest="specs", type=parse_int_list,
                   help="steps of the preceding --solver, comma-separated for several (e.g. 1,2,4,8)")
    p.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance (default 1e-5)")
    p.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance (default 1e-5)")


def solver_specs(args, average_velocity: bool, default_steps: list[int]) -> list[tuple[str, int]]:
    """[(solver, steps)] from the --solver/--steps pairs; dopri5 gets one row whatever its steps."""
    raw = args.specs or [[None, None]]
    out: list[tuple[str, int]] = []
    for solver, steps in raw:
        solver = "meanflow" if average_velocity else (solver or "euler")
        if solver not in SOLVERS and solver != "meanflow":
            raise ValueError(f"unknown solver {solver!r}; choose from: {', '.join(SOLVERS)}")
        if solver == "dopri5":
            out.append((solver, (steps or [1])[0]))
        else:
            out.extend((solver, k) for k in (steps or default_steps))
    return list(dict.fromkeys(out))


def add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (defaults < --preset < --config < flags < --set)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named settings, e.g. meanflow-cifar10")
    g.add_argument("--config", help="TOML file with [data] [model] [method] [optim] [train] tables")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field, e.g. --set method.weight_power=1.0 (repeatable)")


def config_from_args(args, flag_fields: dict[str, str]) -> RunConfig:
    """Build the RunConfig: defaults, preset, TOML, then flags (dest -> field map), then --set."""
    cfg = RunConfig()
    if args.preset:
        cfg = apply_overrides(cfg, PRESETS[args.preset])
    if args.config:
        cfg = load_toml(args.config, cfg)
    flags = {key: getattr(args, dest) for dest, key in flag_fields.items() if getattr(args, dest) is not None}
    cfg = apply_overrides(cfg, flags)
    sets = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        sets[key.strip()] = value.strip()
    return apply_overrides(cfg, sets)


def run_folder_lock(out: str | Path) -> contextlib.AbstractContextManager:
    """OUT's lock (training.lock.RunLock) for a command that writes a run folder, held by rank 0 under torchrun
    (the other ranks write only what rank 0 coordinates); a second writer gets a one-line error."""
    from straightflow.training.lock import RunLock

    main = int(os.environ.get("RANK", "0")) == 0  # torchrun's rank, whether or not the group is joined yet
    return RunLock(out) if main else contextlib.nullcontext()


def check_writable(path: str | Path, flag: str = "--out") -> Path:
    """`path` itself, once its folder exists and is writable: an output that cannot be written is refused
    before the work that would fill it, not after."""
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot create its folder {folder} ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{flag} {path}: its folder {folder} is not writable")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; name a file")
    return path
