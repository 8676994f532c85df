"""A conditional 2-D task whose answer is multimodal: one-step MeanFlow against flow matching + dopri5.

Three models: flow matching (sampled with dopri5), MeanFlow trained from scratch, and MeanFlow distilled from
the flow-matching model as its teacher (both sampled in one step).

    python examples/conditional_branches.py                 # ~8 CPU minutes; pictures and a table in runs/branches
    python examples/conditional_branches.py --steps 300     # a quick look

The task (probabilistic regression, the shape of a policy or an inverse problem): a context c ~ U(-1, 1), and
given c, y in R^2 lies on one of three branches,

    y = r(c) (cos theta_k(c), sin theta_k(c)) + 0.04 eps,   k ~ U{0, 1, 2},
    theta_k(c) = 2 pi k / 3 + (pi / 2) c,   r(c) = 1 + 0.5 c,

so a regression onto E[y | c] lands between the branches, and a good conditional generator must put a third
of its mass on each. Both models are the built-in MLP conditioned on the tensor c (an embedding of c, with a
learned null condition for classifier-free guidance), trained through the Python API on tensors of our own:

    Trainer(cfg, out, data=(y, c)).fit()  ->  load_run(out)  ->  sample_run(run, n, cond=c)

For each of five contexts the table scores samples against fresh draws from the true p(y | c): W2 beside its
floor (two true draws), the share of samples that lie on a branch (98.9% of true draws do; samples smeared
between the branches do not), and how they split over the three branches (a collapse onto one shows there).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from straightflow.metrics.distances import wasserstein2
from straightflow.runs import load_run, sample_run
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

BRANCHES = 3
CONTEXTS = (-0.8, -0.4, 0.0, 0.4, 0.8)


def branch_points(c: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (N, 2), branch k (N,)) drawn from p(y | c) for contexts c: (N,)."""
    k = torch.randint(0, BRANCHES, c.shape, generator=generator)
    theta = 2 * math.pi * k / BRANCHES + 0.5 * math.pi * c
    r = 1 + 0.5 * c
    y = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 1)
    return y + 0.04 * torch.randn(y.shape, generator=generator), k


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (n, 2), c (n, 1)): contexts uniform on [-1, 1] and one draw of y for each."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, generator=g) * 2 - 1
    return branch_points(c, g)[0], c[:, None]


def branch_shares(y: torch.Tensor, c: float) -> tuple[float, list[float]]:
    """(share of samples on a branch, i.e. within 3 noise sd = 0.12 of a branch's centre at context c (98.9% of
    true draws are); share of the samples on each branch)."""
    theta = 2 * math.pi * torch.arange(BRANCHES) / BRANCHES + 0.5 * math.pi * c
    centres = (1 + 0.5 * c) * torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    dist, nearest = torch.cdist(y, centres).min(1)
    on = dist < 0.12
    return float(on.float().mean()), [float((on & (nearest == k)).float().mean()) for k in range(BRANCHES)]


def train(method: str, y: torch.Tensor, c: torch.Tensor, out: Path, steps: int, width: int,
          teacher: Path | None = None) -> None:
    """Train `method` at the library's defaults; with a `teacher` (a flow-matching run) MeanFlow is distilled:
    its target takes the teacher's velocity, and it starts from the teacher's weights (as `straightflow distill
    --method meanflow` does)."""
    overrides = {"method.name": method, "train.steps": steps, "model.width": width, "train.log_every": 100,
                 "method.label_dropout": 0.1}
    if teacher is not None:
        overrides.update({"method.teacher": str(teacher), "train.init_from": str(teacher),
                          "method.weight_power": 0.0, "method.ratio": 0.75})
    Trainer(apply_overrides(RunConfig(), overrides), out, progress=False, data=(y, c)).fit()


def evaluate(out: Path, method: str, name: str, n: int) -> tuple[list[dict], dict]:
    """Rows of the table and the samples per context, for the run in `out`."""
    run = load_run(out, device="cpu")
    solver, steps = ("euler", 1) if method == "meanflow" else ("dopri5", 0)
    rows, samples = [], {}
    for j, ctx in enumerate(CONTEXTS):
        g = torch.Generator().manual_seed(100 + j)
        truth = branch_points(torch.full((n,), ctx), g)[0]
        second = branch_points(torch.full((n,), ctx), g)[0]
        y = sample_run(run, n, solver=solver, steps=steps or 8, seed=j, cond=torch.tensor([ctx])).x
        samples[ctx] = y
        w2, floor = wasserstein2(y, truth), wasserstein2(second, truth)
        on, shares = branch_shares(y, ctx)
        rows.append({"method": name, "c": ctx,
                     "W2": w2, "floor": floor, "ratio": w2 / floor, "on": on,
                     "shares": "/".join(f"{s:.2f}" for s in shares)})
    return rows, samples


def plot(samples: dict[str, dict], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["truth", *samples]
    fig, axes = plt.subplots(len(names), len(CONTEXTS), figsize=(2.2 * len(CONTEXTS), 2.2 * len(names)),
                             squeeze=False)
    for j, ctx in enumerate(CONTEXTS):
        truth = branch_points(torch.full((n,), ctx), torch.Generator().manual_seed(7))[0]
        for i, name in enumerate(names):
            pts = truth if name == "truth" else samples[name][ctx]
            ax = axes[i, j]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
            ax.set_xlim(-1.8, 1.8)
            ax.set_ylim(-1.8, 1.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"c = {ctx:+.1f}")
            if j == 0:
                ax.set_ylabel(name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/branches")
    p.add_argument("--n-train", type=int, default=20000, help="training pairs (y, c)")
    p.add_argument("--steps", type=int, default=0, help="training steps of each model (0: the method's default)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--n", type=int, default=1000, help="samples per context for the table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    y, c = make_data(args.n_train, seed=0)
    table, samples = [], {}
    runs = (("fm", "fm", "FM + dopri5", None), ("meanflow", "meanflow", "MeanFlow, 1 step", None),
            ("meanflow", "distilled", "MeanFlow from FM teacher, 1 step", out / "fm"))
    for method, folder, name, teacher in runs:
        train(method, y, c, out / folder, args.steps, args.width, teacher)
        rows, samples[name] = evaluate(out / folder, method, name, args.n)
        table += rows
    plot(samples, args.n, out / "branches.png")
    lines = ["| method | c | W2 | floor | W2 / floor | on a branch | share per branch |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['c']:+.1f} | {r['W2']:.3f} | {r['floor']:.3f} | {r['ratio']:.2f}x | "
              f"{r['on']:.0%} | {r['shares']} |" for r in table]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"pictures: {out / 'branches.png'}")
    return table


if __name__ == "__main__":
    main()
