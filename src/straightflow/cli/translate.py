"""`straightflow translate RUN --input x.npy|FOLDER --out OUT`: carry images of RUN's source domain to its data
domain (a run trained with --source IMAGESET --data IMAGESET)."""

from __future__ import annotations

import argparse

from straightflow.cli.common import add_solver_args, solver_specs


def add_parser(subs) -> None:
    p = subs.add_parser(
        "translate", help="translate images with an image-to-image run (unpaired translation)",
        description="Solve RUN's flow from x0 = each input image (RUN trained with --source IMAGESET --data "
        "IMAGESET). Inputs: a .npy of shape (N, C, H, W), or (N, H, W) for grey runs, with pixels in the model's "
        "space [-1, 1] (level k of L is 2k/(L-1) - 1); or a folder of images (flat or one subfolder per class), "
        "read like folder:PATH data: RGB, shorter side resized to H, centre-cropped, grey runs take the luma. "
        "Writes OUT/translated.npy (N, C, H, W) in [-1, 1], OUT/images/*.png (one per input, 8-bit) and "
        "OUT/grid.png (input | output). Default sampler: one jump for MeanFlow, k Euler steps for a run distilled "
        "to k, else 8 Euler steps. Example: straightflow translate runs/thin2bold-d1 --input thin.npy --steps 1 "
        "--out translated",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder of an image-to-image flow")
    p.add_argument("--input", required=True, help="a .npy of images in [-1, 1], or a folder of image files")
    add_solver_args(p, multi=False)
    p.add_argument("--batch", type=int, default=500, help="images solved at once")
    p.add_argument("--weights", default="ema", choices=("ema", "model"), help="EMA or raw weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.pipelines.translate import (
        default_translation_sampler,
        read_translation_inputs,
        require_translation_run,
        translate,
        write_translation,
    )
    from straightflow.runs import load_run

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    r = load_run(args.run, weights=args.weights, device=args.device)
    require_translation_run(r)
    solver, steps = default_translation_sampler(r)
    if args.specs:
        specs = solver_specs(args, r.average_velocity, default_steps=[steps])
        if len(specs) != 1:
            raise ValueError(f"translate takes one solver and one step count, got {specs}")
        solver, steps = specs[0]
    x, names = read_translation_inputs(args.input, r.shape)
    y, nfe = translate(r, x, solver, steps, args.batch, args.rtol, args.atol)
    d = r.config.data
    paths = write_translation(args.out, x, y, names, title=f"{d.source} -> {d.data}: {solver}, NFE {nfe:g}")
    from straightflow.metrics.flows import transport_cost

    print(f"translated {len(names)} images {d.source} -> {d.data} ({solver}, NFE {nfe:g}; transport cost "
          f"E|y - x|^2 = {transport_cost(x, y):.3f}) -> {paths['npy']} {tuple(y.shape)} in [-1, 1], "
          f"{paths['images']}/, {paths['grid']}")
    return 0
