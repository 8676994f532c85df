"""One step of classical explicit Runge-Kutta methods for dx/dt = v(x, t).

Every stepper has the signature ``step(v, x, t, h) -> x_next`` with x: (B, *D), t: (B,) the current time
and h: (B,) the step (negative to integrate backward in time); it returns x at time t + h. Local error is
O(h^(order+1)), global error O(h^order). ``nfe`` is the number of evaluations of v per step; no evaluation
is reused across steps (Heun's last evaluation is at the predicted point, not the corrected one, so it
cannot be reused).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from straightflow.types import VelocityField, broadcast_time

__all__ = ["StepFn", "Stepper", "euler", "midpoint", "heun", "rk4", "STEPPERS"]

StepFn = Callable[[VelocityField, Tensor, Tensor, Tensor], Tensor]


def euler(v: VelocityField, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """Forward Euler: x + h v(x, t). Order 1, 1 NFE."""
    return x + broadcast_time(h, x) * v(x, t)


def midpoint(v: VelocityField, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """Explicit midpoint: x + h v(x + h/2 v(x, t), t + h/2). Order 2, 2 NFE."""
    hb = broadcast_time(h, x)
    k1 = v(x, t)
    return x + hb * v(x + 0.5 * hb * k1, t + 0.5 * h)


def heun(v: VelocityField, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """Heun (explicit trapezoid): k1 = v(x, t), k2 = v(x + h k1, t + h), x + h/2 (k1 + k2). Order 2, 2 NFE."""
    hb = broadcast_time(h, x)
    k1 = v(x, t)
    k2 = v(x + hb * k1, t + h)
    return x + 0.5 * hb * (k1 + k2)


def rk4(v: VelocityField, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """Classical fourth-order Runge-Kutta (weights 1/6, 1/3, 1/3, 1/6). Order 4, 4 NFE."""
    hb = broadcast_time(h, x)
    half = 0.5 * h
    k1 = v(x, t)
    k2 = v(x + 0.5 * hb * k1, t + half)
    k3 = v(x + 0.5 * hb * k2, t + half)
    k4 = v(x + hb * k3, t + h)
    return x + hb / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@dataclass(frozen=True)
class Stepper:
    """A step function with its convergence order and number of v evaluations per step."""

    fn: StepFn
    order: int
    nfe: int

    def __call__(self, v: VelocityField, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        return self.fn(v, x, t, h)


STEPPERS: dict[str, Stepper] = {
    "euler": Stepper(euler, order=1, nfe=1),
    "midpoint": Stepper(midpoint, order=2, nfe=2),
    "heun": Stepper(heun, order=2, nfe=2),
    "rk4": Stepper(rk4, order=4, nfe=4),
}
