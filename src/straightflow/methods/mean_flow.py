r"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"), in our time convention.

Convention (the project's): t = 0 is the noise x0, t = 1 the data x1, x_t = alpha_t x1 + sigma_t x0
(x_t = (1 - t) x0 + t x1 on the linear path). The network is an average velocity u(x, s, t): x lives at
time s, the jump ends at time t (s <= t), and

    u(x_s, s, t) = 1 / (t - s) * int_s^t v(x_tau, tau) dtau,      x_t = x_s + (t - s) u(x_s, s, t),
    u(x, t, t) = v(x, t).

The MeanFlow identity, derived in our convention. Along a trajectory of v, with t held fixed,

    (t - s) u(x_s, s, t) = int_s^t v(x_tau, tau) dtau.

Differentiate both sides in s (x_s moves with s, dx_s/ds = v(x_s, s)):

    -u(x_s, s, t) + (t - s) d/ds u(x_s, s, t) = -v(x_s, s),

    =>  u(x_s, s, t) = v(x_s, s) + (t - s) d/ds u(x_s, s, t),
        d/ds u = v . grad_x u + d_s u = J_u (v, 1, 0),

the Jacobian-vector product of u over its inputs (x, s, t) along the tangent (v, 1, 0).

Sign check against the paper, whose time runs the other way (tau = 0 data, tau = 1 noise, z_tau =
(1 - tau) x + tau eps). The paper writes u_p(z_{t_p}, r_p, t_p) with r_p <= t_p: z lives at t_p (the noisier
end) and the jump goes back to r_p, z_{r_p} = z_{t_p} - (t_p - r_p) u_p. With our time = 1 - paper time:

    our s = 1 - t_p   (the time where the point lives),     our t = 1 - r_p   (the jump's end),
    r_p <= t_p  <=>  s <= t,   t_p - r_p = t - s,   v = -v_p,   u = -u_p,   d/ds = -d/dt_p.

The paper's identity u_p = v_p - (t_p - r_p) d/dt_p u_p becomes -u = -v - (t - s) (-d/ds)(-u), i.e.
u = v + (t - s) d/ds u: the paper's minus turns into our plus, and its tangent (v_p, 0, 1) over (z, r_p, t_p)
is our (v, 1, 0) over (x, s, t) (the derivative is in the time of the point, not of the jump's end).

Training (paper eqs. 9-11). Draw s <= t, (x0, x1) from the coupling, x_s = alpha_s x1 + sigma_s x0 and the
conditional velocity v = dx_s = alpha'_s x1 + sigma'_s x0; then

    u_tgt = sg(v + (t - s) J_{u_theta}(x_s, s, t) . (v, 1, 0)),
    Delta = u_theta(x_s, s, t) - u_tgt,
    loss  = sg(w) * mean_d Delta^2,    w = 1 / (mean_d Delta^2 + c)^p   (adaptive weight, paper sec. 4.3).

The target is affine in v, so its conditional expectation given x_s is the target built from the marginal
v (the same argument as in conditional flow matching); with p > 0 the weight makes this approximate.
Rows with s = t are exactly flow matching: the target is v.

Squared errors here are means over the data dimensions (like :func:`flow_matching_loss`), also inside the
weight; the paper sums over dimensions, so its c for D-dimensional data corresponds to our c = c_paper / D.

Jacobian-vector product modes (each returns u with autograd history and the tangent du detached):

- "tangent": the network's own tangent pass, ``model(x, s, t, tangent=(v, 1, 0))`` (MLP, U-Net and DiT carry
  one, built from :mod:`straightflow.models.tangent`): one joint pass whose tangent side runs without autograd,
  so backward sees only the primal graph. Cheapest: a training step costs 1.2-1.5x a flow-matching step.
- "func": ``torch.func.jvp`` over (x, s): one joint forward-mode pass; the primal keeps its graph.
- "func_nograd": the tangent by ``torch.func.jvp`` under ``torch.no_grad``, then an ordinary forward with
  gradients (two passes). For kernels whose forward-mode AD does not record a backward graph. The RNG is
  forked so both passes draw the same dropout masks.
- "finite_difference": (u(x + e v, s + e, t) - u(x - e v, s - e, t)) / (2 e) under ``no_grad`` plus a
  forward with gradients (three passes), for models without forward-mode AD at all. Truncation error
  e^2 / 6 * d^3u/ds^3: for Fourier time features of angular frequency w this is a relative (e w)^2 / 6 of
  their contribution (0.7% at e = 1e-3, w = 200); round-off adds about eps_machine * |u| / e.

Which velocity drives the tangent (``tangent_velocity``). The identity needs the *marginal* v in the tangent
(v, 1, 0). The paper puts the conditional v there, which is right in expectation (the target is affine in v)
but multiplies the conditional velocity's variance by J_u. Improved MeanFlow (Geng et al. 2025, "iMF") puts
the network's own instantaneous velocity there, v_theta(x_s, s) = u_theta(x_s, s, s) under stop-gradient:

    u_tgt = sg(v + (t - s) J_u . (v_theta(x_s, s), 1, 0)),

so the loss is a regression of u_theta + (t - s) sg(d/ds u) onto the conditional v, whose minimiser is the
same (at the exact u, u_theta(x, s, s) is the marginal v). It costs one extra forward pass without gradients
("model"); "conditional" is the paper's target.

Classifier-free guidance folded into training (paper sec. 4.2 and appendix B.1): for a labelled row c
(not dropped) the velocity in both the tangent and the target is

    v_tilde = omega v + kappa u_theta(x_s, s, s | c) + (1 - omega - kappa) u_theta(x_s, s, s | null),

with both network terms under stop-gradient; rows whose label was dropped keep v. The network then learns
the guided average velocity at the effective scale omega / (1 - kappa), and samples with one pass.
omega = 1, kappa = 0 is plain v and costs no extra pass.

Teacher distillation. Given a trained velocity field v_T (a flow-matching run), the target uses the teacher's
marginal velocity in place of the conditional one,

    u_tgt = sg(v_T(x_s, s) + (t - s) J_u . (v_T(x_s, s), 1, 0)),

which is exactly the identity with the marginal v (no conditional-expectation argument needed), so the
target no longer varies with the unseen (x0, x1) given x_s: its variance falls to zero, up to the teacher's
error. A conditional teacher can be guided, v_T = v_T(x | null) + omega (v_T(x | c) - v_T(x | null)) on
labelled rows (classifier-free guidance distilled into one step; kappa must then be 0).

That is the Eulerian form of the teacher's target (``teacher_target = "eulerian"``): it differentiates u along
the teacher's flow at the jump's start. The Lagrangian form (``"lagrangian"``; Boffi et al. 2025, "How to
build a consistency model", their LMD) differentiates the student's own jump at its end instead. The jump
X(x_s, s, t) = x_s + (t - s) u(x_s, s, t) follows the teacher's flow iff d/dt X = v_T(X, t), that is
u + (t - s) d/dt u = v_T(X, t), so

    u_tgt = sg(v_T(X, t) - (t - s) d/dt u(x_s, s, t)),   X = sg(x_s + (t - s) u(x_s, s, t)),

whose fixed point is again the teacher's exact average velocity; d/dt u is the JVP along (0, 0, 1) (the
network's tangent pass, else a central difference in t), and the teacher runs at the jump's end.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from straightflow.conditions import Condition, as_condition, null_like
from straightflow.methods.flow_matching import LossOutput
from straightflow.methods.guidance import drop_labels, guided_velocity
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.rng import rand
from straightflow.types import AverageVelocityField, broadcast_time

__all__ = [
    "JVP_MODES",
    "TANGENT_VELOCITIES",
    "TEACHER_TARGETS",
    "average_velocity_dt",
    "sample_interval_times",
    "adaptive_weight",
    "has_tangent_pass",
    "jvp_tangent",
    "jvp_func",
    "jvp_func_nograd",
    "jvp_finite_difference",
    "average_velocity_jvp",
    "guided_velocity_target",
    "teacher_velocity",
    "mean_flow_target",
    "model_velocity",
    "mean_flow_loss",
    "additivity_gap",
    "MeanFlow",
]

JVP_MODES = ("tangent", "func", "func_nograd", "finite_difference")
TANGENT_VELOCITIES = ("conditional", "model")
TEACHER_TARGETS = ("eulerian", "lagrangian")
DEFAULT_FD_EPS = 1e-3


# ------------------------------------------------------------------------------------------------ checks
def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def _check_power(power: float) -> None:
    if not power >= 0:
        raise ValueError(f"weight power p must be >= 0, got {power}")


def _check_mode(mode: str) -> None:
    if mode not in JVP_MODES:
        raise ValueError(f"unknown jvp mode {mode!r}; choose from: {', '.join(JVP_MODES)}")


def _check_tangent_velocity(name: str) -> None:
    if name not in TANGENT_VELOCITIES:
        raise ValueError(f"unknown tangent velocity {name!r}; choose from: {', '.join(TANGENT_VELOCITIES)}")


def _check_teacher_target(name: str) -> None:
    if name not in TEACHER_TARGETS:
        raise ValueError(f"unknown teacher target {name!r}; choose from: {', '.join(TEACHER_TARGETS)}")


def _check_order(s: Tensor, t: Tensor) -> None:
    if s.shape != t.shape or s.dim() != 1:
        raise ValueError(f"s and t must both be (B,), got {tuple(s.shape)} and {tuple(t.shape)}")
    if bool((s > t).any()):
        bad = int((s > t).nonzero()[0, 0])
        raise ValueError(
            f"MeanFlow needs s <= t (x lives at s, the jump ends at t); row {bad} has s={float(s[bad]):.6g} "
            f"> t={float(t[bad]):.6g}"
        )


def _as_u_fn(model: Callable, label: Tensor | None) -> AverageVelocityField:
    """u(x, s, t) from a network called as model(x, s, t, label=...) (or a plain u_fn when label is None)."""
    if label is None:
        return model
    return lambda x, s, t: model(x, s, t, label=label)


@contextlib.contextmanager
def _same_rng(device: torch.device) -> Iterator[None]:
    """Run the block, then restore the global RNG (CPU and `device`) to its state before the block.

    A pass run inside and the pass after it therefore draw the same random numbers (dropout masks).
    """
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
    else:
        with torch.random.fork_rng(devices=[device], device_type=device.type):
            yield


# ------------------------------------------------------------------------------------------------ times
def sample_interval_times(
    n: int,
    ratio: float,
    time_sampler,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    full_jump: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """(s, t), each (n,), with s <= t: two draws of `time_sampler`, sorted (s = min, t = max).

    A fraction (1 - ratio) of the rows (each independently with probability 1 - ratio) gets t = s: these are
    plain flow-matching rows. As in the paper, the jump's end collapses onto the point's time (the paper sets
    r = t; its t, the point's time, is our s), so the point's time s has the same law in every row.
    Of the rows with s != t, a fraction `full_jump` is then set to (s, t) = (0, 1): the whole interval, the one
    jump a one-step sampler takes (two sorted draws almost never land near that corner).
    time_sampler: a :mod:`straightflow.methods.time_sampling` sampler.
    """
    _check_fraction(ratio, "ratio (fraction of pairs with s != t)")
    _check_fraction(full_jump, "full_jump (fraction of s != t rows on the whole interval)")
    a = time_sampler.sample(n, generator, device=device, dtype=dtype)
    b = time_sampler.sample(n, generator, device=device, dtype=dtype)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    coin = rand(n, generator, s.device)
    keep = coin < ratio
    if full_jump > 0:  # the same uniform decides both, so the shares are exact: ratio * full_jump of all rows
        whole = coin < ratio * full_jump
        s, t = torch.where(whole, torch.zeros_like(s), s), torch.where(whole, torch.ones_like(t), t)
    return s, torch.where(keep, t, s)


# ------------------------------------------------------------------------------------------------ weight
def adaptive_weight(sq_err: Tensor, power: float, eps: float) -> Tensor:
    """w = sg(1 / (sq_err + eps)^power), same shape as sq_err (B,); power = 0 gives ones exactly.

    With w * sq_err as the loss, p = 0.5 behaves like a pseudo-Huber loss and p = 1 like a log loss
    (the gradient of sq_err / (sq_err + c) is that of log(sq_err + c) at the current point).
    """
    _check_power(power)
    if not eps >= 0:
        raise ValueError(f"weight eps c must be >= 0, got {eps}")
    if power == 0:
        return torch.ones_like(sq_err)
    return (sq_err.detach() + eps).pow(-power)


# ------------------------------------------------------------------------------------------------ JVPs
def _inner_module(model: Callable) -> Callable:
    """The network under DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers."""
    inner = model
    for _ in range(4):
        nxt = getattr(inner, "_orig_mod", None)
        if nxt is None and isinstance(inner, nn.parallel.DistributedDataParallel):
            nxt = inner.module
        if nxt is None:
            return inner
        inner = nxt
    return inner


@functools.lru_cache(maxsize=64)
def _forward_takes_tangent(cls: type) -> bool:
    forward = getattr(cls, "forward", None)
    return forward is not None and "tangent" in inspect.signature(forward).parameters


def has_tangent_pass(model: Callable) -> bool:
    """Whether the network (under DDP / torch.compile wrappers) carries its own tangent pass."""
    return hasattr(_inner_module(model), "forward_with_tangent")


def jvp_tangent(
    model: Callable, x: Tensor, s: Tensor, t: Tensor, v: Tensor, label: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(u(x, s, t), J_u . (v, 1, 0)) by the network's own tangent pass, in one pass.

    x, v: (B, *D); s, t: (B,). The tangent comes back detached. When the network's forward takes
    ``tangent=(dx, ds, dt)`` the call goes through ``model(...)`` itself, so wrappers' hooks run
    (DistributedDataParallel all-reduces the gradients only for calls through its forward); otherwise
    ``forward_with_tangent`` is called on the network.
    """
    return _tangent_pass(model, x, s, t, label, (v, torch.ones_like(s), torch.zeros_like(t)))


def _tangent_pass(
    model: Callable, x: Tensor, s: Tensor, t: Tensor, label: Tensor | None, tangent: tuple[Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """(u(x, s, t), J_u . (dx, ds, dt) detached) by the network's own tangent pass; tangent = (dx, ds, dt)."""
    inner = _inner_module(model)
    fwt = getattr(inner, "forward_with_tangent", None)
    if fwt is None:
        raise ValueError(
            f"jvp='tangent' needs a model with forward_with_tangent, and {type(inner).__name__} has none; "
            "use jvp='func', 'func_nograd' or 'finite_difference'"
        )
    if _forward_takes_tangent(type(inner)):
        u, du = model(x, s, t, label=label, tangent=tangent)
    else:
        u, du = fwt(x, s, t, label, *tangent)
    return u, du.detach()


def average_velocity_dt(
    model: Callable, x: Tensor, s: Tensor, t: Tensor, label: Tensor | None = None, mode: str = "tangent",
    fd_eps: float = DEFAULT_FD_EPS,
) -> tuple[Tensor, Tensor]:
    """(u_theta(x, s, t) with gradients, d/dt u = J_u . (0, 0, 1) detached), each (B, *D).

    By the network's tangent pass when it has one and `mode` is "tangent"; otherwise by the central difference
    (u(x, s, t + e) - u(x, s, t - e)) / (2 e) under no_grad (same RNG state for both) plus a forward with
    gradients, which any network allows.
    """
    _check_mode(mode)
    if mode == "tangent" and has_tangent_pass(model):
        return _tangent_pass(model, x, s, t, label, (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t)))
    return _central_difference(_as_u_fn(model, label), x, s, t, (torch.zeros_like(x), 0.0, 1.0), fd_eps)


def _central_difference(
    u_fn: AverageVelocityField, x: Tensor, s: Tensor, t: Tensor, direction: tuple, eps: float
) -> tuple[Tensor, Tensor]:
    """(u(x, s, t) with gradients, (u(p + e d) - u(p - e d)) / (2 e) detached) for p = (x, s, t) and the
    direction d = (dx, ds, dt) (ds, dt: numbers or (B,) tensors). The two no_grad passes and the forward see the
    same RNG state (dropout masks)."""
    if not eps > 0:
        raise ValueError(f"finite-difference step must be > 0, got {eps}")
    dx, ds, dt = direction
    with torch.no_grad():
        with _same_rng(x.device):
            up = u_fn(x + eps * dx, s + eps * ds, t + eps * dt)
        with _same_rng(x.device):
            um = u_fn(x - eps * dx, s - eps * ds, t - eps * dt)
    return u_fn(x, s, t), ((up - um) / (2 * eps)).detach()


def jvp_func(u_fn: AverageVelocityField, x: Tensor, s: Tensor, t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(u(x, s, t) with graph, J_u . (v, 1, 0) detached) by one ``torch.func.jvp`` pass over (x, s)."""
    u, du = torch.func.jvp(lambda x_, s_: u_fn(x_, s_, t), (x, s), (v, torch.ones_like(s)))
    return u, du.detach()


def jvp_func_nograd(
    u_fn: AverageVelocityField, x: Tensor, s: Tensor, t: Tensor, v: Tensor,
    tangent_u_fn: AverageVelocityField | None = None,
) -> tuple[Tensor, Tensor]:
    """The tangent by ``torch.func.jvp`` under no_grad, then a separate forward with gradients.

    Both passes start from the same RNG state (forked and restored), so they see the same dropout masks.
    `tangent_u_fn` (default u_fn) is what the tangent pass differentiates: the bare network under DDP, whose
    forward mutates buffers in a way torch.func refuses; the gradient pass still goes through `u_fn`.
    """
    tangent_u_fn = tangent_u_fn or u_fn
    with _same_rng(x.device), torch.no_grad():
        _, du = torch.func.jvp(lambda x_, s_: tangent_u_fn(x_, s_, t), (x, s), (v, torch.ones_like(s)))
    return u_fn(x, s, t), du.detach()


def jvp_finite_difference(
    u_fn: AverageVelocityField, x: Tensor, s: Tensor, t: Tensor, v: Tensor, eps: float = DEFAULT_FD_EPS
) -> tuple[Tensor, Tensor]:
    """Central difference (u(x + e v, s + e, t) - u(x - e v, s - e, t)) / (2 e) and a forward with gradients.

    e is in time units (the tangent's time component is 1, and x moves by e v, the flow's own step).
    Error O(e^2) (see the module docstring). All three passes see the same RNG state.
    """
    return _central_difference(u_fn, x, s, t, (v, 1.0, 0.0), eps)


def average_velocity_jvp(
    model: Callable,
    x: Tensor,
    s: Tensor,
    t: Tensor,
    v: Tensor,
    label: Tensor | None = None,
    mode: str = "tangent",
    fd_eps: float = DEFAULT_FD_EPS,
) -> tuple[Tensor, Tensor]:
    """(u_theta(x, s, t) with gradients, d/ds u = J_u . (v, 1, 0) detached), each (B, *D), by `mode`.

    model: a network called as model(x, s, t, label=label); with label None any u_fn(x, s, t) works.
    "tangent" uses the network's own tangent pass where it has one (:func:`has_tangent_pass`) and falls back
    to "func" ("func_nograd" through DDP or torch.compile wrappers) where it has none.
    """
    _check_mode(mode)
    inner = _inner_module(model)
    wrapped = inner is not model
    if mode == "tangent":
        if has_tangent_pass(inner):
            return jvp_tangent(model, x, s, t, v, label)
        # A network of the user's own without a tangent pass: torch.func, on the bare module under wrappers.
        mode = "func_nograd" if wrapped else "func"
    u_fn = _as_u_fn(model, label)
    if mode == "func":
        if wrapped and hasattr(model, "require_backward_grad_sync"):
            raise ValueError("method.jvp='func' cannot run through DistributedDataParallel (torch.func rejects its "
                             "forward); use 'tangent' or 'func_nograd'")
        return jvp_func(u_fn, x, s, t, v)
    if mode == "func_nograd":
        return jvp_func_nograd(u_fn, x, s, t, v, _as_u_fn(_inner_module(model), label) if wrapped else None)
    return jvp_finite_difference(u_fn, x, s, t, v, fd_eps)


# ------------------------------------------------------------------------------------------------ guidance
def guided_velocity_target(
    model: Callable,
    x_s: Tensor,
    s: Tensor,
    v: Tensor,
    label: Tensor | None,
    num_classes: int | Condition,
    omega: float = 1.0,
    kappa: float = 0.0,
) -> Tensor:
    """v_tilde (B, *D): omega v + kappa u(x_s, s, s | c) + (1 - omega - kappa) u(x_s, s, s | null) on rows
    whose condition c is not the null one, v elsewhere. Network terms under no_grad.

    num_classes: the number of classes K (null label K) or a Condition (a tensor condition's null).

    omega = 1, kappa = 0 returns v itself without calling the network.
    """
    if omega == 1.0 and kappa == 0.0:
        return v
    condition = as_condition(num_classes)
    if label is None or condition is None:
        raise ValueError(
            f"guidance folded into training (omega={omega}, kappa={kappa}) needs a conditional model with "
            "conditions; use omega=1, kappa=0 for an unconditional one"
        )
    keep = broadcast_time(~condition.is_null(label), v)  # rows that carry a condition
    b = x_s.shape[0]
    with torch.no_grad():  # one batched pass of 2B rows, no host sync; null rows are computed and discarded
        both = model(
            torch.cat([x_s, x_s]), torch.cat([s, s]), torch.cat([s, s]),
            label=torch.cat([label, null_like(condition, label)]),
        )
        cond, uncond = both[:b].to(v.dtype), both[b:].to(v.dtype)
        mixed = omega * v + kappa * cond + (1.0 - omega - kappa) * uncond
    return torch.where(keep, mixed, v)


def teacher_velocity(
    teacher: Callable, x_s: Tensor, s: Tensor, label: Tensor | None, num_classes: int | Condition,
    omega: float = 1.0,
) -> Tensor:
    """v_T(x_s, s) (B, *D) of a velocity network, under no_grad, in x_s's dtype; labelled rows guided at scale
    omega (rows with the null label get the unconditional velocity)."""
    with torch.no_grad():
        field_ = guided_velocity(teacher, label, omega, num_classes if label is not None else 0)
        return field_(x_s, s).to(x_s.dtype)


# -------------------------------------------------------------------------------------------- target / loss
def mean_flow_target(
    model: Callable,
    x_s: Tensor,
    s: Tensor,
    t: Tensor,
    v: Tensor,
    label: Tensor | None = None,
    jvp: str = "tangent",
    fd_eps: float = DEFAULT_FD_EPS,
    tangent: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(u_theta(x_s, s, t) with gradients, u_tgt = sg(v + (t - s) J_u . (w, 1, 0))), each (B, *D).

    x_s, v: (B, *D) the point at time s and the velocity there (conditional, marginal or guided);
    s <= t: (B,); w = `tangent` (default v), the velocity the JVP follows. For the exact u and marginal v = w,
    u_tgt = u (the MeanFlow identity).
    """
    _check_order(s, t)
    return _target(model, x_s, s, t, v, label, jvp, fd_eps, tangent)


def _target(
    model: Callable, x_s: Tensor, s: Tensor, t: Tensor, v: Tensor, label: Tensor | None, jvp: str,
    fd_eps: float, tangent: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    u, du = average_velocity_jvp(model, x_s, s, t, v if tangent is None else tangent, label, jvp, fd_eps)
    return u, (v + broadcast_time(t - s, v) * du).detach()


def _lagrangian_target(
    model: Callable, teacher: Callable, x_s: Tensor, s: Tensor, t: Tensor, label: Tensor | None,
    num_classes: int | Condition, omega: float, jvp: str, fd_eps: float,
) -> tuple[Tensor, Tensor]:
    """(u_theta(x_s, s, t) with gradients, u_tgt = sg(v_T(X, t) - (t - s) d/dt u)) with X = sg(x_s + (t - s) u),
    each (B, *D): the teacher evaluated at the end of the student's jump (module docstring)."""
    u, du_dt = average_velocity_dt(model, x_s, s, t, label, jvp, fd_eps)
    h = broadcast_time(t - s, u)
    end = (x_s + h * u).detach()
    return u, (teacher_velocity(teacher, end, t, label, num_classes, omega) - h * du_dt).detach()


def model_velocity(model: Callable, x_s: Tensor, s: Tensor, label: Tensor | None) -> Tensor:
    """v_theta(x_s, s) = u_theta(x_s, s, s) (B, *D) under no_grad, in x_s's dtype: the network's own
    instantaneous velocity (the tangent of Improved MeanFlow's target)."""
    with torch.no_grad():
        return _as_u_fn(model, label)(x_s, s, s).to(x_s.dtype)


def mean_flow_loss(
    model: Callable,
    path: AffinePath,
    x0: Tensor,
    x1: Tensor,
    s: Tensor,
    t: Tensor,
    label: Tensor | None = None,
    weight_power: float = 0.5,
    weight_eps: float = 1e-3,
    jvp: str = "tangent",
    omega: float = 1.0,
    kappa: float = 0.0,
    num_classes: int | Condition = 0,
    fd_eps: float = DEFAULT_FD_EPS,
    tangent_velocity: str = "conditional",
) -> tuple[Tensor, Tensor]:
    """(weighted loss, unweighted loss), each (B,): sg(w) e and e = mean_d (u_theta(x_s, s, t) - u_tgt)^2.

    x0, x1: (B, *D) coupled noise and data; s <= t: (B,); label: (B,) long (null = num_classes), a tensor
    condition (B, *C) (num_classes then a TensorCondition), or None.
    x_s and v = dx_s come from `path` at time s; guidance (omega, kappa) replaces v by v_tilde;
    tangent_velocity "model" makes the JVP follow sg(u_theta(x_s, s, s)) instead of v (see the module docstring).
    """
    _check_order(s, t)
    _check_power(weight_power)
    _check_tangent_velocity(tangent_velocity)
    return _loss(model, path, x0, x1, s, t, label, weight_power, weight_eps, jvp, omega, kappa, num_classes,
                 fd_eps, tangent_velocity=tangent_velocity)


def _loss(
    model: Callable, path: AffinePath, x0: Tensor, x1: Tensor, s: Tensor, t: Tensor, label: Tensor | None,
    weight_power: float, weight_eps: float, jvp: str, omega: float, kappa: float, num_classes: int | Condition,
    fd_eps: float, teacher: Callable | None = None, tangent_velocity: str = "conditional",
    teacher_target: str = "eulerian",
) -> tuple[Tensor, Tensor]:
    # mean_flow_loss without the s <= t check (which reads the device); MeanFlow.loss draws s <= t itself.
    sample = path.sample(x0, x1, s)
    if teacher is not None and teacher_target == "lagrangian":  # the teacher at the end of the student's jump
        u, target = _lagrangian_target(model, teacher, sample.x_t, s, t, label, num_classes, omega, jvp, fd_eps)
    else:
        tangent = None
        if teacher is not None:  # the teacher's velocity is already marginal: it is its own tangent
            v = teacher_velocity(teacher, sample.x_t, s, label, num_classes, omega)
        else:
            v = guided_velocity_target(model, sample.x_t, s, sample.dx_t, label, num_classes, omega, kappa)
            if tangent_velocity == "model":
                tangent = model_velocity(model, sample.x_t, s, label)
        u, target = _target(model, sample.x_t, s, t, v, label, jvp, fd_eps, tangent)
    err = (u - target).square().flatten(1).mean(1)
    return adaptive_weight(err, weight_power, weight_eps) * err, err


# ------------------------------------------------------------------------------------------------ diagnostic
def additivity_gap(u_fn: AverageVelocityField, x_r: Tensor, r: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """Consistency of an average velocity: mean_d |(t - r) u(x_r, r, t) - [(s - r) u(x_r, r, s) +
    (t - s) u(x_s, s, t)]|^2, (B,), with x_s = x_r + (s - r) u(x_r, r, s) reached by u itself.

    Zero for an exact u (integrals add over [r, s] and [s, t]); MeanFlow never trains on it, so it measures
    how self-consistent the learned jumps are. x_r: (B, *D); r <= s <= t: (B,).
    """
    _check_order(r, s)
    _check_order(s, t)
    u_rs = u_fn(x_r, r, s)
    x_s = x_r + broadcast_time(s - r, x_r) * u_rs
    one = broadcast_time(t - r, x_r) * u_fn(x_r, r, t)
    two = broadcast_time(s - r, x_r) * u_rs + broadcast_time(t - s, x_r) * u_fn(x_s, s, t)
    return (one - two).square().flatten(1).mean(1)


# ------------------------------------------------------------------------------------------------ method
@dataclass(frozen=True)
class MeanFlow:
    """The MeanFlow objective: interval sampler, label dropout, guidance folding, adaptive weight.

    ratio: fraction of rows with s != t, of which a fraction full_jump span (0, 1);
    weight_power p and weight_eps c of w = 1 / (e + c)^p;
    jvp: one of JVP_MODES; tangent_velocity: "conditional" (the paper) or "model" (Improved MeanFlow);
    omega, kappa: guidance folded into training (conditional models only);
    teacher: a frozen velocity network v_T(x, t, label=...) whose marginal velocity replaces the conditional
    one in the target (omega then guides the teacher); teacher_target: "eulerian" (the MeanFlow identity with
    v_T) or "lagrangian" (v_T at the jump's end; see the module docstring).
    """

    path: AffinePath
    time_sampler: object  # methods.time_sampling sampler: .sample(n, generator, device, dtype) -> (n,)
    num_classes: int | Condition = 0  # K class labels, or a methods.guidance Condition
    label_dropout: float = 0.0
    ratio: float = 0.5
    full_jump: float = 0.0
    weight_power: float = 0.5
    weight_eps: float = 1e-3
    jvp: str = "tangent"
    omega: float = 1.0
    kappa: float = 0.0
    fd_eps: float = DEFAULT_FD_EPS
    tangent_velocity: str = "conditional"
    teacher: nn.Module | None = field(default=None, compare=False, repr=False)  # frozen velocity network
    teacher_target: str = "eulerian"

    def __post_init__(self) -> None:
        _check_fraction(self.ratio, "ratio (fraction of pairs with s != t)")
        _check_fraction(self.full_jump, "full_jump (fraction of s != t rows on the whole interval)")
        _check_fraction(self.label_dropout, "label_dropout")
        _check_power(self.weight_power)
        if not self.weight_eps >= 0:
            raise ValueError(f"weight eps c must be >= 0, got {self.weight_eps}")
        _check_mode(self.jvp)
        _check_tangent_velocity(self.tangent_velocity)
        _check_teacher_target(self.teacher_target)
        if not self.fd_eps > 0:
            raise ValueError(f"finite-difference step must be > 0, got {self.fd_eps}")
        guided = self.omega != 1.0 or self.kappa != 0.0
        if self.teacher is not None and self.kappa != 0.0:
            raise ValueError(f"kappa={self.kappa} mixes in the student's own conditional branch; with a teacher, "
                             "guide the teacher by omega alone (kappa=0)")
        if guided and as_condition(self.num_classes) is None:
            raise ValueError(
                f"guidance weights omega={self.omega}, kappa={self.kappa} need a conditional model "
                "(num_classes >= 1); use omega=1, kappa=0"
            )
        if guided and self.teacher is None and (1.0 - self.omega - self.kappa) != 0.0 and self.label_dropout == 0.0:
            raise ValueError(
                f"guidance with omega={self.omega}, kappa={self.kappa} uses the null-label branch, which is "
                "only trained with label_dropout > 0"
            )

    def loss(self, model: nn.Module, batch: CoupledBatch, generator: torch.Generator | None) -> LossOutput:
        """Per-example weighted loss (B,), with the unweighted squared error logged as "loss_unweighted"."""
        x1 = batch.x1
        s, t = sample_interval_times(x1.shape[0], self.ratio, self.time_sampler, generator, x1.device,
                                     full_jump=self.full_jump)
        s, t = s.to(x1.dtype), t.to(x1.dtype)
        label = batch.label
        if label is not None and self.label_dropout > 0:
            label = drop_labels(label, self.label_dropout, self.num_classes, generator)
        loss, err = _loss(
            model, self.path, batch.x0, x1, s, t, label, self.weight_power, self.weight_eps, self.jvp,
            self.omega, self.kappa, self.num_classes, self.fd_eps, self.teacher, self.tangent_velocity,
            self.teacher_target,
        )
        return LossOutput(loss, {"loss_unweighted": err.detach()})
