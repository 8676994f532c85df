"""`straightflow train`: fit a flow-matching or MeanFlow model; writes RUN/ with checkpoint, metrics, plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from straightflow.cli.common import add_config_args, config_from_args
from straightflow.training.config import method_defaults_help

# flag dest -> config field
FLAGS = {
    "method": "method.name", "data": "data.data", "source": "data.source", "coupling": "data.coupling",
    "steps": "train.steps", "batch_size": "train.batch_size", "lr": "optim.lr", "seed": "train.seed",
    "device": "train.device", "precision": "train.precision", "compile": "train.compile",
    "data_dir": "data.data_dir", "conditional": "data.conditional", "arch": "model.arch",  # images
    "log": "train.log", "sample_every": "train.sample_every",
    "standardize": "data.standardize",
}


def add_parser(subs) -> None:
    p = subs.add_parser(
        "train", help="train a model",
        description="Train a velocity field (--method fm) or an average-velocity field (--method meanflow). "
        "Writes OUT/config.json, OUT/checkpoint.safetensors (atomically, every --set train.ckpt_every "
        "steps), OUT/metrics.jsonl, OUT/loss.png and OUT/samples.png. A killed run continues with --resume.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--method", help="fm (flow matching / rectified flow) or meanflow")
    p.add_argument("--data", help="toy set (8gaussians, moons, checkerboard, circles, swissroll, 2spirals, "
                   "pinwheel, lissajous, spiral, studentt, grid25, ringdot, moons16d), "
                   "a .npy/.csv file of shape (N, D), or images: digits, digits-thin, digits-bold, mnist, "
                   "fashion-mnist, cifar10, folder:PATH")
    p.add_argument("--source", help="'gaussian' (default) or a data set, for data-to-data transport; an image set "
                   "of --data's shape for unpaired image-to-image translation (see `straightflow translate`)")
    p.add_argument("--coupling", help="independent | ot (exact minibatch OT) | sinkhorn; "
                   + method_defaults_help("data.coupling"))
    p.add_argument("--steps", type=int, help="training steps; " + method_defaults_help("train.steps"))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW); " + method_defaults_help("optim.lr"))
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", help="fp32 | bf16")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the network")
    p.add_argument("--data-dir", help="folder with image data files (MNIST IDX, CIFAR-10 batches); see docs/images.md")
    p.add_argument("--conditional", action="store_const", const=True,
                   help="class-conditional training on the data's labels (label dropout: method.label_dropout)")
    p.add_argument("--arch", help="network: auto (mlp for vectors, unet for images) | mlp | unet | dit")
    p.add_argument("--log", metavar="BACKENDS", help="also log to tensorboard and/or wandb (comma-separated; "
                   "OUT/metrics.jsonl is always written): loss, lr, grad norm, steps/s, examples/s")
    p.add_argument("--sample-every", type=int, metavar="K", help="every K steps log a sample picture and, for "
                   "vector data, W2 against its floor (0 = off)")
    p.add_argument("--standardize", choices=("auto", "on", "off"),
                   help="train on per-feature standardised vectors, mapped back on sampling; auto (default): on for "
                   ".npy/.csv data, off for toy sets and images")
    add_config_args(p)
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip loss.png and samples.png")
    p.set_defaults(handler=run)


def run(args) -> int:
    from straightflow.training.trainer import Trainer

    if args.steps is not None and args.steps < 1:  # in a config, train.steps = 0 means the method's default
        raise ValueError(f"--steps must be >= 1, got {args.steps} (leave it out for the method's default)")
    cfg = config_from_args(args, FLAGS)
    trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    trainer.fit()
    print(f"trained {cfg.method.name} on {cfg.data.data} for {trainer.step} steps -> {args.out}")
    if not args.no_plots:
        write_run_plots(Path(args.out))
    return 0


def write_run_plots(out: Path) -> None:
    """loss.png from metrics.jsonl and samples.png (2 000 samples over held-out data)."""
    from straightflow.plots.figures import plot_run_losses, plot_samples
    from straightflow.runs import load_run, sample_run

    plot_run_losses(out)
    run = load_run(out)
    from straightflow.image_evaluation import is_image_run, write_image_grid

    if is_image_run(run):  # images: samples.png is a grid (one row per class for conditional runs)
        write_image_grid(run, out / "samples.png")
    elif run.dim == 2:
        solver, steps = ("meanflow", 1) if run.average_velocity else ("dopri5", 1)
        x = sample_run(run, 2000, solver=solver, steps=steps).x.cpu()
        data = run.load_data()
        plot_samples(x, data.heldout(2000), out / "samples.png",
                     title=f"{run.config.method.name} on {run.config.data.data}: {solver}")
