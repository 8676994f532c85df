"""odeint: convergence order against a closed-form ODE, dopri5 accuracy, reversibility, NFE, trajectories."""

import math

import pytest
import torch

from straightflow.solvers.integrate import odeint, time_grid

F64 = torch.float64
A, W = -0.7, 1.3  # dx/dt = A cos(t) x + W t J x with J the 90-degree rotation


def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    assert t.shape == (x.shape[0],) and t.dtype == x.dtype
    rot = torch.stack([-x[:, 1], x[:, 0]], dim=1)
    return A * torch.cos(t)[:, None] * x + W * t[:, None] * rot


def exact(x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """Scaling and rotation commute: x(t1) = exp(A (sin t1 - sin t0)) R(W (t1^2 - t0^2) / 2) x0."""
    scale = math.exp(A * (math.sin(t1) - math.sin(t0)))
    ang = W * (t1**2 - t0**2) / 2
    c, s = math.cos(ang), math.sin(ang)
    return scale * torch.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1]], dim=1)


def _x0(b: int = 6) -> torch.Tensor:
    return torch.randn(b, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


def _slope(hs, errs) -> float:
    lx, ly = [math.log(h) for h in hs], [math.log(e) for e in errs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_global_error_decreases_at_the_solver_order(solver, order):
    x0, t0, t1 = _x0(), 0.0, 1.5
    steps = [8, 16, 32, 64]
    errs = [
        float((odeint(velocity, x0, solver=solver, steps=n, t0=t0, t1=t1).x - exact(x0, t0, t1)).abs().max())
        for n in steps
    ]
    assert abs(_slope([(t1 - t0) / n for n in steps], errs) - order) < 0.3


def test_dopri5_matches_exact_solution():
    x0 = _x0()
    sol = odeint(velocity, x0, solver="dopri5", t0=0.0, t1=1.5, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(sol.x, exact(x0, 0.0, 1.5), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("solver", "tol"), [("rk4", 1e-8), ("dopri5", 1e-6), ("heun", 1e-3)])
def test_backward_integration_inverts_forward(solver, tol):
    x0 = _x0()
    kw = dict(solver=solver, steps=64, rtol=1e-8, atol=1e-8)
    fwd = odeint(velocity, x0, t0=0.2, t1=1.2, **kw)
    torch.testing.assert_close(fwd.x, exact(x0, 0.2, 1.2), rtol=0, atol=tol)
    back = odeint(velocity, fwd.x, t0=1.2, t1=0.2, **kw)
    torch.testing.assert_close(back.x, x0, rtol=0, atol=tol)


@pytest.mark.parametrize(("solver", "nfe"), [("euler", 8), ("midpoint", 16), ("heun", 16), ("rk4", 32)])
def test_fixed_step_nfe_is_exact(solver, nfe):
    calls = []

    def counted(x, t):
        calls.append(1)
        return velocity(x, t)

    assert odeint(counted, _x0(), solver=solver, steps=8).nfe == nfe == len(calls)


def test_dopri5_nfe_counts_every_call():
    calls = []

    def counted(x, t):
        calls.append(1)
        return velocity(x, t)

    sol = odeint(counted, _x0(), solver="dopri5")
    assert sol.nfe == len(calls) > 6


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
def test_trajectory_shape_and_endpoints_on_images(solver):
    x0 = torch.randn(3, 2, 4, 4, dtype=F64)
    sol = odeint(lambda x, t: -x * t[:, None, None, None], x0, solver=solver, steps=5, return_trajectory=True)
    assert sol.trajectory.shape == (6, 3, 2, 4, 4) and sol.times.shape == (6,)
    assert torch.equal(sol.trajectory[0], x0) and torch.equal(sol.trajectory[-1], sol.x)
    torch.testing.assert_close(sol.times, torch.linspace(0, 1, 6, dtype=F64))
    # dx/dt = -t x: x(t) = exp(-t^2 / 2) x0; Euler's iterates are exactly prod_{j<k} (1 - t_j h) x0.
    if solver == "euler":
        factors = torch.cat([torch.ones(1, dtype=F64), torch.cumprod(1 - sol.times[:-1] * 0.2, 0)])
        torch.testing.assert_close(sol.trajectory, factors[:, None, None, None, None] * x0)
    else:
        want = torch.exp(-sol.times**2 / 2)[:, None, None, None, None] * x0
        torch.testing.assert_close(sol.trajectory, want, rtol=0, atol=1e-4)


def test_no_trajectory_unless_requested():
    sol = odeint(velocity, _x0(), solver="heun", steps=4)
    assert sol.trajectory is None and sol.times is None


def test_non_uniform_grid_replaces_steps():
    x0 = _x0()
    fine = 1.5 * torch.linspace(0, 1, 201, dtype=F64) ** 2  # denser near t = 0
    sol = odeint(velocity, x0, solver="rk4", grid=fine)
    torch.testing.assert_close(sol.x, exact(x0, 0.0, 1.5), rtol=0, atol=1e-8)
    coarse = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.6, 1.0], dtype=F64)
    sol = odeint(velocity, x0, solver="euler", steps=100, grid=coarse, return_trajectory=True)
    assert sol.nfe == 5 and torch.equal(sol.times, coarse) and sol.trajectory.shape == (6, 6, 2)


def test_gradients_flow_through_the_solve():
    # The flow of a linear ODE is linear: d x(t1) / d x0 is the exact propagator M, so the gradient of
    # sum(x(t1)) w.r.t. x0 is M^T 1.
    x0 = _x0(1).requires_grad_(True)
    odeint(velocity, x0, solver="rk4", steps=64, t1=1.5).x.sum().backward()
    cols = exact(torch.eye(2, dtype=F64), 0.0, 1.5)  # row i = M e_i
    torch.testing.assert_close(x0.grad[0], cols.sum(1), rtol=0, atol=1e-7)
    with torch.no_grad():
        assert not odeint(velocity, x0, solver="rk4", steps=4).x.requires_grad


def test_time_grid_is_uniform_with_exact_endpoints():
    g = time_grid(4, 1.0, 0.0)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=F64))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(solver="rk45"), "unknown solver"),
        (dict(steps=0), "steps"),
        (dict(rtol=0.0), "rtol"),
        (dict(atol=-1.0), "atol"),
        (dict(t0=0.5, t1=0.5), "differ"),
        (dict(grid=torch.tensor([0.0, 0.5, 0.2])), "monotone|increasing"),
    ],
)
def test_bad_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        odeint(velocity, _x0(), **kw)
