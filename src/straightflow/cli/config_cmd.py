"""`straightflow config`: print the configuration a `train` with the same flags would use, as TOML."""

from __future__ import annotations

import argparse

from straightflow.cli.common import add_config_args, config_from_args

FLAGS = {"method": "method.name", "data": "data.data"}


def add_parser(subs) -> None:
    p = subs.add_parser(
        "config", help="print the resolved configuration (TOML)",
        description="Print every config field as `train` would use it: defaults < --preset < --config < flags < "
        "--set, then the per-method defaults (data.coupling, model.time_features, train.steps) filled in for "
        "the method and kind of data. The output is a TOML file that --config reads back. Example: "
        "straightflow config --method meanflow --data moons > mf.toml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--method", help="fm or meanflow")
    p.add_argument("--data", help="a data set name or file, as for train")
    p.add_argument("--unresolved", action="store_true", help="leave the per-method defaults at auto / 0")
    add_config_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.data.images import is_image_spec
    from straightflow.training.config import resolve_defaults, to_toml

    cfg = config_from_args(args, FLAGS)
    if not args.unresolved:
        cfg = resolve_defaults(cfg, vectors=not is_image_spec(cfg.data.data))
    print(to_toml(cfg), end="")
    return 0
