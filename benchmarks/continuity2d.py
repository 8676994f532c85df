"""The continuity equation d_t p + div(p v) = 0, checked numerically on the analytic Gaussian-mixture path.

    python benchmarks/continuity2d.py          # a few seconds; writes docs/img/continuity.png

Source N(0, I), target a 3-component isotropic mixture, linear path: p_t and its marginal velocity v are
closed forms (straightflow.paths.gaussian.GaussianMixture). On a 121 x 121 grid over [-4, 4]^2 at
t = 0.25, 0.5, 0.75 the script evaluates d_t p (autograd in t, and central differences with dt = 1e-4) and
div(p v) = p (div v + v . grad log p) (exact divergence, autograd gradient), and prints the largest terms
and residuals, for the true field and for a perturbed one (v + 0.2 (x2, x1)) that does not transport p.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from straightflow.paths.continuity import continuity_residual
from straightflow.paths.gaussian import GaussianMixture

F64 = torch.float64
TIMES = (0.25, 0.5, 0.75)


def mixture() -> GaussianMixture:
    return GaussianMixture(
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=F64),
        means=torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.5, -2.0]], dtype=F64),
        stds=torch.tensor([0.3, 0.5, 0.8], dtype=F64),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=int, default=121)
    p.add_argument("--figure", default="docs/img/continuity.png")
    args = p.parse_args()
    gm = mixture()
    axis = torch.linspace(-4.0, 4.0, args.grid, dtype=F64)
    x = torch.cartesian_prod(axis, axis)  # row i*n + j is (axis[i], axis[j])

    def perturbed(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gm.marginal_velocity(y, t) + 0.2 * y.flip(1)

    print("| t | field | d_t p by | max abs d_t p | max abs div(p v) | max abs residual d_t p + div(p v) |")
    print("|---|---|---|---|---|---|")
    maps = []
    for t_value in TIMES:
        t = torch.full((x.shape[0],), t_value, dtype=F64)
        for name, field in (("true", gm.marginal_velocity), ("perturbed", perturbed)):
            for how, dt in (("autograd", None), ("central dt=1e-4", 1e-4)):
                terms = continuity_residual(gm.marginal_log_prob, field, x, t, dt=dt)
                p_t = terms.log_p.exp()
                dp = p_t * terms.dt_log_p
                flux = p_t * (terms.div_v + terms.v_dot_grad_log_p)
                print(f"| {t_value} | {name} | {how} | {float(dp.abs().max()):.3e} | {float(flux.abs().max()):.3e} "
                      f"| {float(terms.density_residual.abs().max()):.3e} |")
                if how == "autograd":
                    maps.append((t_value, name, p_t, dp, flux, terms.density_residual))
    write_figure(maps, axis, gm, Path(args.figure))
    print(f"\nwrote {args.figure}")


def write_figure(maps: list, axis: torch.Tensor, gm: GaussianMixture, path: Path) -> None:
    n = axis.shape[0]
    rows = [m for m in maps if m[1] == "true"]
    bad = {m[0]: m[5] for m in maps if m[1] == "perturbed"}
    fig = Figure(figsize=(16, 3.4 * len(rows)))
    axes = fig.subplots(len(rows), 5, squeeze=False)
    ext = (float(axis[0]), float(axis[-1]), float(axis[0]), float(axis[-1]))

    def show(ax, values: torch.Tensor, title: str, cmap: str = "RdBu_r", symmetric: bool = True) -> None:
        img = values.view(n, n).T.numpy()  # [j, i]: y up the rows
        vmax = float(values.abs().max()) or 1.0
        im = ax.imshow(img, origin="lower", extent=ext, cmap=cmap, vmin=-vmax if symmetric else 0.0, vmax=vmax)
        fig.colorbar(im, ax=ax, shrink=0.8, format="%.1e")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    for r, (t_value, _, p_t, dp, flux, resid) in enumerate(rows):
        show(axes[r][0], p_t, f"p_t, t = {t_value}, with v", cmap="viridis", symmetric=False)
        sub = torch.arange(0, n, max(1, n // 15))
        gx, gy = torch.meshgrid(axis[sub], axis[sub], indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        vel = gm.marginal_velocity(pts, torch.full((pts.shape[0],), t_value, dtype=F64))
        axes[r][0].quiver(pts[:, 0], pts[:, 1], vel[:, 0], vel[:, 1], color="white", alpha=0.7, width=0.004)
        show(axes[r][1], dp, "d_t p")
        show(axes[r][2], flux, "div(p v)")
        show(axes[r][3], resid, f"d_t p + div(p v): max {float(resid.abs().max()):.1e}")
        show(axes[r][4], bad[t_value], f"same, v + 0.2 (x2, x1): max {float(bad[t_value].abs().max()):.1e}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
