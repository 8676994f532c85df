"""Likelihoods of 2-D flow-matching models against the true entropy, and mode guidance's density/diversity trade.

    python benchmarks/likelihood2d.py                       # trains 8gaussians + checkerboard (20k steps each)
    python benchmarks/likelihood2d.py --runs runs/bench/toy2d   # reuse RUNS/{set}-independent checkpoints
    python benchmarks/likelihood2d.py --steps 2000 --n 500      # quick look

Table 1, per set: test NLL (nats per point, held-out n points, dopri5 rtol = atol = 1e-5) with the exact
divergence and with Hutchinson (one Rademacher probe per point, fixed along the trajectory), each with its
standard error, NFE and seconds per 1000 points; beside them the true differential entropy H (closed form
for the checkerboard, log 32; a converged grid integral of -p log p for 8gaussians, see data.toy.toy_entropy)
and the true density's NLL on the same points (its Monte Carlo estimate of H). NLL - H estimates
KL(data || model) >= 0; so does the paired mean of NLL_model(x) - NLL_true(x) over the same points, with a
much smaller standard error (the points' own spread cancels).

Table 2, per set: mode guidance, lambda in {0, 0.1, 0.25, 0.5, 1, 2}: Euler with `--guide-steps` steps adding
lambda h g(x, t), g = grad(-div v) by Hutchinson (one probe per call). For each lambda: the samples' mean
model log p (exact, dopri5), their mean true log p (8gaussians) or the fraction on dark squares
(checkerboard), W2 to held-out data over the W2 noise floor, and seconds per 1000 samples.
Writes docs/img/mode_guidance.png.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from straightflow.data.toy import toy_entropy, toy_log_prob
from straightflow.density import run_log_likelihood
from straightflow.evaluation import noise_floor
from straightflow.metrics.distances import wasserstein2
from straightflow.runs import load_run, sample_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

SETS = ("8gaussians", "checkerboard")
LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def train_or_reuse(data: str, steps: int, out: Path, runs: Path | None, seed: int) -> Path:
    if runs is not None:
        run_dir = runs / f"{data}-independent"
        if not (run_dir / "checkpoint.safetensors").exists():
            raise SystemExit(f"--runs given but {run_dir} has no checkpoint")
        return run_dir
    run_dir = out / data
    if (run_dir / "checkpoint.safetensors").exists():
        try:
            if load_run(run_dir).step == steps:
                return run_dir
        except ValueError:  # written by an older model layout: train again
            pass
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cfg = apply_overrides(RunConfig(), {
        "data.data": data, "train.steps": steps, "train.seed": seed, "train.ckpt_every": steps,
        "train.log_every": 500, "model.arch": "mlp",
    })
    start = time.perf_counter()
    Trainer(cfg, run_dir, progress=False).fit()
    print(f"trained {data}: {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    return run_dir


def nll_row(run, x: torch.Tensor, estimator: str) -> dict:
    start = time.perf_counter()
    res = run_log_likelihood(run, x, batch_size=1000, estimator=estimator, probes_k=1, seed=0)
    seconds = time.perf_counter() - start
    nll = -res.log_prob.double()
    return {"nll": float(nll.mean()), "se": float(nll.std() / math.sqrt(len(nll))), "per_point": nll,
            "nfe": sum(res.nfe) / len(res.nfe), "s_per_1000": 1000 * seconds / len(nll)}


def model_log_p(run, x: torch.Tensor) -> torch.Tensor:
    return run_log_likelihood(run, x, batch_size=1000, estimator="exact").log_prob.double()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--steps", type=int, default=20000, help="training steps per set")
    p.add_argument("--runs", help="folder with {set}-independent runs to reuse (e.g. runs/bench/toy2d)")
    p.add_argument("--out", default="runs/bench/likelihood2d")
    p.add_argument("--n", type=int, default=2000, help="held-out points for NLL, samples for mode guidance")
    p.add_argument("--guide-steps", type=int, default=32, help="Euler steps of the mode-guided sampler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default="docs/img/mode_guidance.png")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: a small MLP gains little from more, "
                   "and oversubscribed cores slow every process down)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sets = args.sets.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={args.n}, 3x256 SiLU MLP, "
          f"{'reused runs from ' + args.runs if args.runs else f'{args.steps} training steps'}", flush=True)

    nll_lines, guide_lines, panels = [], [], {}
    for data in sets:
        run = load_run(train_or_reuse(data, args.steps, Path(args.out), Path(args.runs) if args.runs else None,
                                      args.seed))
        dataset = run.load_data()
        x = dataset.heldout(args.n, seed=args.seed)
        true_nll = -toy_log_prob(data, x.double())
        exact, hutch = nll_row(run, x, "exact"), nll_row(run, x, "hutchinson")
        h = toy_entropy(data)
        gap = exact["per_point"] - true_nll  # paired: the points' own sampling noise cancels
        nll_lines.append(
            f"| {data} | {run.step} | {h:.4f} "
            f"| {float(true_nll.mean()):.4f} ± {float(true_nll.std()) / math.sqrt(args.n):.4f} "
            f"| {exact['nll']:.4f} ± {exact['se']:.4f} | {exact['nll'] - h:+.4f} "
            f"| {float(gap.mean()):+.4f} ± {float(gap.std()) / math.sqrt(args.n):.4f} | {exact['nfe']:.0f} "
            f"| {exact['s_per_1000']:.1f} | {hutch['nll']:.4f} ± {hutch['se']:.4f} | {hutch['nfe']:.0f} "
            f"| {hutch['s_per_1000']:.1f} |")
        print(nll_lines[-1], flush=True)

        floor = noise_floor(dataset, args.n, seed=1)
        heldout = dataset.heldout(args.n, seed=1)
        panels[data] = (dataset.heldout(args.n, seed=2), {})
        for lam in LAMBDAS:
            start = time.perf_counter()
            sol = sample_run(run, args.n, solver="euler", steps=args.guide_steps, seed=args.seed, mode_guidance=lam)
            seconds = time.perf_counter() - start
            xs = sol.x.cpu()
            logp = model_log_p(run, xs)
            true_lp = toy_log_prob(data, xs.double())
            quality = (f"{float(true_lp.mean()):.3f}" if data == "8gaussians"
                       else f"{float(torch.isfinite(true_lp).double().mean()):.3f}")
            w2 = wasserstein2(xs, heldout)
            guide_lines.append(
                f"| {data} | {lam:g} | {float(logp.mean()):.3f} | {quality} | {w2 / floor:.2f}x "
                f"| {1000 * seconds / args.n:.2f} |")
            print(guide_lines[-1], flush=True)
            panels[data][1][lam] = (xs, logp)

    print("\nTable 1: test NLL (nats/point) vs true entropy H; mean ± standard error over the points\n")
    print("| set | train steps | true H | true-density NLL, same points | NLL exact | NLL - H "
          "| NLL - true NLL, paired | NFE | s/1000 | NLL Hutchinson (1 probe) | NFE | s/1000 |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(nll_lines))
    print(f"\nTable 2: mode guidance (Euler {args.guide_steps} steps, Hutchinson 1 probe); quality = mean true "
          "log p (8gaussians) or fraction on dark squares (checkerboard)\n")
    print("| set | lambda | mean model log p | quality | W2 / floor | s/1000 samples |\n|---|---|---|---|---|---|")
    print("\n".join(guide_lines))
    write_figure(panels, Path(args.figure))
    print(f"\nwrote {args.figure}")


def write_figure(panels: dict, path: Path) -> None:
    rows = len(panels)
    fig = Figure(figsize=(3.2 * len(LAMBDAS), 3.2 * rows))
    axes = fig.subplots(rows, len(LAMBDAS), squeeze=False)
    for r, (data, (ref, by_lam)) in enumerate(panels.items()):
        lo = float(min(ref.min(), *(xs.min() for xs, _ in by_lam.values()))) - 0.5
        hi = float(max(ref.max(), *(xs.max() for xs, _ in by_lam.values()))) + 0.5
        lo, hi = max(lo, -7.0), min(hi, 7.0)
        vmin = min(float(lp.quantile(0.02)) for _, lp in by_lam.values())
        vmax = max(float(lp.max()) for _, lp in by_lam.values())
        for c, lam in enumerate(LAMBDAS):
            ax = axes[r][c]
            xs, lp = by_lam[lam]
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.85", linewidths=0)
            sc = ax.scatter(xs[:, 0], xs[:, 1], s=1.5, c=lp.numpy(), cmap="viridis", vmin=vmin, vmax=vmax,
                            linewidths=0)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{data}, λ = {lam:g}\nmean log p = {float(lp.mean()):.2f}", fontsize=9)
        fig.colorbar(sc, ax=list(axes[r]), shrink=0.8, label="model log p")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
