"""Two-dimensional toy distributions, sampled in torch from a `torch.Generator`.

The shapes follow the FFJORD / torchcfm toy sets, so pictures and numbers compare with the literature.
Every sampler draws i.i.d. points: a mixture component (moon, ring, spiral, arm, Gaussian) is picked
independently for each point, never in fixed halves. All sets live roughly in [-4, 4]^2:

- ``8gaussians``: 8 isotropic Gaussians, std 0.5, centres 5 (cos k pi/4, sin k pi/4), k = 0..7.
- ``moons``: sklearn's two moons (noise std 0.05), mapped by x -> (4/3) (x - (0.5, 0.25)) into about
  [-2, 2] x [-1, 1].
- ``checkerboard``: FFJORD's board, uniform on the 8 dark squares (side 2) of a 4 x 4 board on [-4, 4)^2.
- ``circles``: FFJORD's rings, radii 3 and 1.5 (sklearn make_circles, factor 0.5, times 3), plus
  Gaussian noise of std 0.24 (0.08 times 3).
- ``swissroll``: sklearn's swiss roll (noise std 1) seen from above, coordinates (x, z) / 5.
- ``2spirals``: FFJORD's two interleaved spirals over 1.5 turns, divided by 3, noise std 0.1.
- ``pinwheel``: FFJORD's pinwheel, 5 arms, radial std 0.3, tangential std 0.1, rate 0.25, times 2.

Harder shapes of our own, for choosing defaults over many kinds of data (benchmarks/defaults2d.py):

- ``lissajous``: a thin closed curve that crosses itself, 3 (sin(3u + pi/2), sin(2u)), u uniform, plus
  Gaussian noise of std 0.02 (thin structure: the curve is 150x longer than it is thick).
- ``spiral``: one thin arm of 2 turns, radius 3.5 at the end, uniform along its length, noise std 0.03.
- ``studentt``: heavy tails, 0.5 times a 2-D Student-t with 3 degrees of freedom (infinite 4th moment).
- ``grid25``: 25 tiny clusters, Gaussians of std 0.05 centred on a 5 x 5 grid of spacing 1.5.
- ``ringdot``: two scales at once, 70% a thin ring (radius 3, noise std 0.03) and 30% a tight
  Gaussian (std 0.1) at the centre.
- ``moons16d``: a higher-dimensional set, the 2-D ``moons`` in the first two of 16 coordinates, the
  other 14 Gaussian with std 0.05, turned by one fixed random rotation (a thickened 2-D manifold in 16-D).
  Every other set is 2-D; :func:`toy_dim` gives each set's dimension.

Two sets have a known density: :func:`toy_log_prob` and :func:`toy_entropy` serve those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "TOY_DATASETS",
    "TOY_WITH_DENSITY",
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "sample_toy",
    "toy_log_prob",
    "toy_entropy",
    "toy_dim",
]

EIGHT_GAUSSIANS_RADIUS = 5.0
EIGHT_GAUSSIANS_STD = 0.5
CHECKERBOARD_AREA = 32.0  # 8 dark squares of side 2

_Sampler = Callable[[int, torch.Generator | None], Tensor]


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator)


def _randn(*shape: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=generator)


def _eight_gaussian_centres(dtype: torch.dtype = torch.float32) -> Tensor:
    """The 8 centres, (8, 2): radius 5 at angles k pi/4."""
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    return centres.to(dtype)


def _eight_gaussians(n: int, g: torch.Generator | None) -> Tensor:
    which = torch.randint(0, 8, (n,), generator=g)
    return _eight_gaussian_centres()[which] + EIGHT_GAUSSIANS_STD * _randn(n, 2, generator=g)


def _moons(n: int, g: torch.Generator | None) -> Tensor:
    theta = math.pi * _rand(n, g)
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1.0 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where((_rand(n, g) < 0.5)[:, None], upper, lower) + 0.05 * _randn(n, 2, generator=g)
    return (4.0 / 3.0) * (x - torch.tensor([0.5, 0.25]))


def _checkerboard(n: int, g: torch.Generator | None) -> Tensor:
    # FFJORD: column x1 in [-2, 2), then a row of the same parity as floor(x1); scaled by 2.
    x1 = 4.0 * _rand(n, g) - 2.0
    x2 = _rand(n, g) - 2.0 * torch.randint(0, 2, (n,), generator=g) + torch.floor(x1).remainder(2)
    return 2.0 * torch.stack([x1, x2], dim=1)


def _circles(n: int, g: torch.Generator | None) -> Tensor:
    theta = 2.0 * math.pi * _rand(n, g)
    radius = torch.where(_rand(n, g) < 0.5, 3.0, 1.5)
    ring = radius[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
    return ring + 0.24 * _randn(n, 2, generator=g)


def _swissroll(n: int, g: torch.Generator | None) -> Tensor:
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, g))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) + _randn(n, 2, generator=g)
    return x / 5.0


def _two_spirals(n: int, g: torch.Generator | None) -> Tensor:
    angle = _rand(n, g).sqrt() * (3.0 * math.pi)  # sqrt: uniform density along the growing arc
    arm = torch.stack([-angle.cos() * angle, angle.sin() * angle], dim=1) + 0.5 * _rand(2 * n, g).view(n, 2)
    sign = torch.where(_rand(n, g) < 0.5, 1.0, -1.0)
    return sign[:, None] * arm / 3.0 + 0.1 * _randn(n, 2, generator=g)


def _pinwheel(n: int, g: torch.Generator | None) -> Tensor:
    arms, rate = 5, 0.25
    features = _randn(n, 2, generator=g) * torch.tensor([0.3, 0.1]) + torch.tensor([1.0, 0.0])
    base = torch.randint(0, arms, (n,), generator=g).to(torch.float32) * (2.0 * math.pi / arms)
    angle = base + rate * features[:, 0].exp()  # arms bend more the further out they reach
    c, s, r, q = angle.cos(), angle.sin(), features[:, 0], features[:, 1]
    # Row vector times [[c, -s], [s, c]], exactly as FFJORD's einsum("ti,tij->tj").
    return 2.0 * torch.stack([r * c + q * s, -r * s + q * c], dim=1)


def _lissajous(n: int, g: torch.Generator | None) -> Tensor:
    """A thin self-crossing curve: 3 (sin(3u + pi/2), sin(2u)) for u uniform on [0, 2 pi), noise std 0.02."""
    u = 2.0 * math.pi * _rand(n, g)
    curve = 3.0 * torch.stack([(3.0 * u + math.pi / 2).sin(), (2.0 * u).sin()], dim=1)
    return curve + 0.02 * _randn(n, 2, generator=g)


SPIRAL_TURNS, SPIRAL_RADIUS = 2.0, 3.5


def _spiral_curve(angle: Tensor) -> Tensor:
    """The arm r = SPIRAL_RADIUS angle / angle_max at angle in [0, angle_max]: (B,) -> (B, 2)."""
    r = SPIRAL_RADIUS * angle / (2.0 * math.pi * SPIRAL_TURNS)
    return torch.stack([r * angle.cos(), r * angle.sin()], dim=1)


def _spiral(n: int, g: torch.Generator | None) -> Tensor:
    """One thin Archimedean arm of 2 turns out to radius 3.5, uniform along its length, noise std 0.03."""
    angle = _rand(n, g).sqrt() * (2.0 * math.pi * SPIRAL_TURNS)  # sqrt: arc length grows like angle^2
    return _spiral_curve(angle) + 0.03 * _randn(n, 2, generator=g)


def _student_t(n: int, g: torch.Generator | None) -> Tensor:
    """Heavy tails: 0.5 z / sqrt(chi2_3 / 3), z ~ N(0, I_2), one chi-square draw per point (3 dof)."""
    chi2 = _randn(n, 3, generator=g).pow(2).sum(dim=1)
    return 0.5 * _randn(n, 2, generator=g) / (chi2 / 3.0).sqrt()[:, None]


GRID25_SPACING, GRID25_STD = 1.5, 0.05


def _grid25_centres() -> Tensor:
    """The 25 centres, (25, 2): a 5 x 5 grid of spacing 1.5 centred on the origin."""
    axis = GRID25_SPACING * (torch.arange(5, dtype=torch.float32) - 2.0)
    return torch.cartesian_prod(axis, axis)


def _grid25(n: int, g: torch.Generator | None) -> Tensor:
    """25 tiny clusters: isotropic Gaussians of std 0.05 on a 5 x 5 grid (spacing 1.5), equal weights."""
    which = torch.randint(0, 25, (n,), generator=g)
    return _grid25_centres()[which] + GRID25_STD * _randn(n, 2, generator=g)


def _ringdot(n: int, g: torch.Generator | None) -> Tensor:
    """Two scales: with probability 0.7 a thin ring (radius 3, noise 0.03), else a centre Gaussian (std 0.1)."""
    theta = 2.0 * math.pi * _rand(n, g)
    ring = 3.0 * torch.stack([theta.cos(), theta.sin()], dim=1) + 0.03 * _randn(n, 2, generator=g)
    dot = 0.1 * _randn(n, 2, generator=g)
    return torch.where((_rand(n, g) < 0.7)[:, None], ring, dot)


MOONS16D_DIM, MOONS16D_NOISE = 16, 0.05


@lru_cache(maxsize=1)
def _moons16d_rotation() -> Tensor:
    """A fixed orthogonal (16, 16) matrix: QR of a Gaussian matrix drawn from seed 0, in float64."""
    a = torch.randn(MOONS16D_DIM, MOONS16D_DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(torch.float32)  # sign fix: a unique Q


def _moons16d(n: int, g: torch.Generator | None) -> Tensor:
    """``moons`` in 16-D: [moons, 0.05 N(0, I_14)] times a fixed rotation (rows: x -> x R^T)."""
    x = torch.cat([_moons(n, g), MOONS16D_NOISE * _randn(n, MOONS16D_DIM - 2, generator=g)], dim=1)
    return x @ _moons16d_rotation().T


_SAMPLERS: dict[str, _Sampler] = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "swissroll": _swissroll,
    "2spirals": _two_spirals,
    "pinwheel": _pinwheel,
    "lissajous": _lissajous,
    "spiral": _spiral,
    "studentt": _student_t,
    "grid25": _grid25,
    "ringdot": _ringdot,
    "moons16d": _moons16d,
}
_DIMS: dict[str, int] = {"moons16d": MOONS16D_DIM}  # every other set is 2-D

TOY_DATASETS: tuple[str, ...] = tuple(_SAMPLERS)
TOY_WITH_DENSITY: tuple[str, ...] = ("8gaussians", "checkerboard")


def _check_name(name: str, allowed: tuple[str, ...], what: str) -> None:
    if name not in allowed:
        raise ValueError(f"{what} '{name}'; choose from: {', '.join(allowed)}")


def toy_dim(name: str) -> int:
    """The dimension of the toy set `name` (2 for all but ``moons16d``)."""
    _check_name(name, TOY_DATASETS, "unknown data set")
    return _DIMS.get(name, 2)


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw n i.i.d. points of the toy set `name`: returns (n, toy_dim(name)) float32 on the CPU.

    `generator` (a CPU `torch.Generator`) makes the draw reproducible; None uses torch's global RNG.
    """
    _check_name(name, TOY_DATASETS, "unknown data set")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples must be an int >= 0, got {n!r}")
    return _SAMPLERS[name](n, generator).to(torch.float32).contiguous()


def _eight_gaussians_log_prob(x: Tensor) -> Tensor:
    # log p(x) = logsumexp_k [-|x - c_k|^2 / (2 s^2)] - log 8 - log(2 pi s^2)
    var = EIGHT_GAUSSIANS_STD**2
    sq = (x[:, None, :] - _eight_gaussian_centres(x.dtype).to(x.device)).pow(2).sum(-1)
    return torch.logsumexp(-sq / (2.0 * var), dim=1) - math.log(8.0) - math.log(2.0 * math.pi * var)


def _checkerboard_log_prob(x: Tensor) -> Tensor:
    # A point is on a dark square iff floor(x1 / 2) + floor(x2 / 2) is even (FFJORD's parity rule).
    inside = ((x >= -4.0) & (x < 4.0)).all(dim=1)
    dark = torch.floor(x / 2.0).sum(dim=1).remainder(2) == 0
    inside_value = torch.full_like(x[:, 0], -math.log(CHECKERBOARD_AREA))
    return torch.where(inside & dark, inside_value, torch.full_like(inside_value, -math.inf))


def toy_log_prob(name: str, x: Tensor) -> Tensor:
    """Exact log-density of a toy set at points x: (B, 2) -> (B,), in x's dtype.

    - ``8gaussians``: log of (1/8) sum_k N(x; c_k, 0.25 I), evaluated with logsumexp.
    - ``checkerboard``: log(1/32) on the dark squares, -inf elsewhere.

    Other names raise ValueError: their densities have no closed form.
    """
    _check_name(name, TOY_WITH_DENSITY, "no closed-form density for data set")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"toy densities take points of shape (B, 2), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if name == "8gaussians":
        return _eight_gaussians_log_prob(x)
    return _checkerboard_log_prob(x)


@lru_cache(maxsize=1)
def _eight_gaussians_entropy() -> float:
    # H = -int p log p on a uniform grid. The integrand is smooth and decays like a Gaussian, so the
    # uniform-grid (trapezoid) rule converges geometrically: spacing s/25 is already exact to ~1e-12.
    # The box reaches 7 std beyond the outermost centre, where p log p is below 1e-18.
    half, spacing = EIGHT_GAUSSIANS_RADIUS + 7 * EIGHT_GAUSSIANS_STD, EIGHT_GAUSSIANS_STD / 25
    axis = torch.arange(-half, half + spacing / 2, spacing, dtype=torch.float64)
    total = 0.0
    for row in axis.split(64):  # in slabs: keeps the (points, 8) distance matrix small
        grid = torch.cartesian_prod(row, axis)
        log_p = _eight_gaussians_log_prob(grid)
        total += float(-(log_p.exp() * log_p).sum())
    return total * spacing**2


def toy_entropy(name: str) -> float:
    """True differential entropy, in nats, of a toy set with a known density.

    - ``checkerboard``: uniform on area 32, so exactly log 32 = 3.4657.
    - ``8gaussians``: numerical integration of -p log p on a uniform grid (spacing std/25 over
      [-8.5, 8.5]^2, float64), accurate to about 1e-10. The components barely overlap (neighbouring
      centres are 7.65 std apart), so the value sits a hair below log 8 + log(2 pi e std^2) = 3.5310,
      the entropy of 8 disjoint Gaussians.

    Other names raise ValueError.
    """
    _check_name(name, TOY_WITH_DENSITY, "no closed-form entropy for data set")
    if name == "checkerboard":
        return math.log(CHECKERBOARD_AREA)
    return _eight_gaussians_entropy()
