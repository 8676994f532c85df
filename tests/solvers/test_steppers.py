"""Single Runge-Kutta steps: local error order, evaluation count, per-row step sizes."""

import math

import pytest
import torch

from straightflow.solvers.steppers import STEPPERS

F64 = torch.float64
A, W = -0.7, 1.3  # v(x, t) = A cos(t) x + W t J x, J the 90-degree rotation


def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    assert t.shape == (x.shape[0],), "time must arrive as a (B,) tensor"
    rot = torch.stack([-x[:, 1], x[:, 0]], dim=1)
    return A * torch.cos(t)[:, None] * x + W * t[:, None] * rot


def exact(x0: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
    """The scaling and the rotation commute, so x(t1) = exp(A (sin t1 - sin t0)) R(W (t1^2 - t0^2) / 2) x0."""
    scale = torch.exp(A * (torch.sin(t1) - torch.sin(t0)))[:, None]
    ang = W * (t1**2 - t0**2) / 2
    c, s = torch.cos(ang), torch.sin(ang)
    return scale * torch.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1]], dim=1)


def _start():
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.1], dtype=F64)
    return x, t


def _slope(hs, errs) -> float:
    lx, ly = [math.log(h) for h in hs], [math.log(e) for e in errs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


@pytest.mark.parametrize("name", STEPPERS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_local_error_is_of_order_p_plus_one(name, sign):
    # One step of a method of order p has local truncation error C h^(p+1).
    stepper, (x, t) = STEPPERS[name], _start()
    hs = [0.2, 0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        hv = torch.full_like(t, sign * h)
        errs.append(float((stepper(velocity, x, t, hv) - exact(x, t, t + hv)).abs().max()))
    assert abs(_slope(hs, errs) - (stepper.order + 1)) < 0.3


@pytest.mark.parametrize(
    ("name", "order", "nfe"), [("euler", 1, 1), ("midpoint", 2, 2), ("heun", 2, 2), ("rk4", 4, 4)]
)
def test_registry_order_and_nfe_match_evaluations(name, order, nfe):
    calls = []

    def counted(x, t):
        calls.append(1)
        return velocity(x, t)

    stepper = STEPPERS[name]
    x, t = _start()
    stepper(counted, x, t, torch.full_like(t, 0.1))
    assert (stepper.order, stepper.nfe) == (order, nfe) and len(calls) == nfe


@pytest.mark.parametrize("name", STEPPERS)
def test_each_row_uses_its_own_time_and_step(name):
    stepper, (x, t) = STEPPERS[name], _start()
    h = torch.tensor([0.1, -0.2, 0.05, 0.3, -0.1], dtype=F64)
    batched = stepper(velocity, x, t, h)
    for i in range(5):
        row = stepper(velocity, x[i : i + 1], t[i : i + 1], h[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], row)


@pytest.mark.parametrize("name", STEPPERS)
def test_steps_integrate_a_constant_field_exactly_on_images(name):
    # Any consistent RK method is exact for v = c: x + h c. Also checks (B, C, H, W) broadcasting of h.
    c = torch.randn(3, 2, 4, 4, dtype=F64)
    x = torch.randn(3, 2, 4, 4, dtype=F64)
    h = torch.tensor([0.5, -0.25, 1.0], dtype=F64)
    out = STEPPERS[name](lambda x_, t_: c, x, torch.zeros(3, dtype=F64), h)
    torch.testing.assert_close(out, x + h[:, None, None, None] * c)
