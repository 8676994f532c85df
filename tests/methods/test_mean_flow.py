"""MeanFlow: the identity on an exact average velocity, the JVP modes, training, guidance folding.

Oracle: source N(0, I), target N(mu, diag(sigma^2)), linear path. The marginal flow is affine per
coordinate, x_t = t mu + std_t x0 with std_t = sqrt((1 - t)^2 + t^2 sigma^2) (paths/gaussian.py, K = 1), so

    v(x, t) = mu + std'_t / std_t (x - t mu),     u(x, s, t) = (t mu + std_t (x - s mu) / std_s - x) / (t - s),

and u(x, t, t) = v(x, t).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from straightflow.methods.flow_matching import flow_matching_loss
from straightflow.methods.mean_flow import (
    JVP_MODES,
    MeanFlow,
    adaptive_weight,
    additivity_gap,
    average_velocity_jvp,
    guided_velocity_target,
    mean_flow_loss,
    mean_flow_target,
    sample_interval_times,
)
from straightflow.methods.time_sampling import LogitNormalTime, UniformTime
from straightflow.models.embeddings import FourierTime
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch
from straightflow.paths.schedule import get_scheduler
from straightflow.solvers.one_step import average_velocity_sample

F64 = torch.float64
PATH = AffinePath(get_scheduler("linear"))
MU = torch.tensor([1.0, -0.5], dtype=F64)
SIG = torch.tensor([0.5, 1.5], dtype=F64)


# ------------------------------------------------------------------------------------------------ oracle
def _std(t):
    return ((1 - t) ** 2 + t**2 * SIG.to(t) ** 2).sqrt()


def _dstd(t):
    return (-(1 - t) + t * SIG.to(t) ** 2) / _std(t)


def v_exact(x, t):
    t = t[:, None]
    return MU.to(x) + _dstd(t) / _std(t) * (x - t * MU.to(x))


def u_exact(x, s, t):
    """Exact average velocity; the s = t rows (|t - s| < 1e-4) fall back to v (the limit)."""
    s1, t1 = s[:, None], t[:, None]
    h = t1 - s1
    far = h > 1e-4
    z = (x - s1 * MU.to(x)) / _std(s1)
    jump = (t1 * MU.to(x) + _std(t1) * z - x) / torch.where(far, h, torch.ones_like(h))
    return torch.where(far, jump, v_exact(x, s))


def _st(n, gen, dtype=F64, gap=0.0):
    a, b = torch.rand(n, generator=gen, dtype=dtype), torch.rand(n, generator=gen, dtype=dtype)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    return s, torch.maximum(t, s + gap)


def _mlp(seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    return MLP(2, 32, 2, n_times=2, **kw).to(dtype)


# ------------------------------------------------------------------------------------------------ (a) identity
@pytest.mark.parametrize("mode", ["func", "func_nograd", "finite_difference"])
def test_exact_average_velocity_is_a_fixed_point_of_the_target(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=F64) * 2
    s, t = _st(64, g, gap=1e-3)
    u, target = mean_flow_target(u_exact, x, s, t, v_exact(x, s), jvp=mode, fd_eps=1e-5)
    torch.testing.assert_close(u, u_exact(x, s, t))
    torch.testing.assert_close(target, u, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ (b) JVPs
@pytest.mark.parametrize("time_inputs", ["s,t-s", "s,t", "t,t-s"])
def test_jvp_modes_match_reverse_mode_and_finite_difference(time_inputs):
    model = _mlp(1, time_inputs=time_inputs)
    g = torch.Generator().manual_seed(1)
    x, v = torch.randn(16, 2, generator=g, dtype=F64), torch.randn(16, 2, generator=g, dtype=F64)
    s, t = _st(16, g)
    # reference: reverse mode (double-backward trick inside autograd.functional.jvp)
    _, ref = torch.autograd.functional.jvp(lambda a, b: model(a, b, t), (x, s), (v, torch.ones_like(s)))
    # central difference with a small step (truncation (e w_max)^2 / 6 ~ 1e-8 relative)
    e = 1e-6
    with torch.no_grad():
        fd = (model(x + e * v, s + e, t) - model(x - e * v, s - e, t)) / (2 * e)
    torch.testing.assert_close(fd, ref, rtol=1e-6, atol=1e-6)
    for mode in JVP_MODES:
        u, du = average_velocity_jvp(model, x, s, t, v, mode=mode, fd_eps=1e-6)
        assert not du.requires_grad and u.requires_grad, mode
        torch.testing.assert_close(u, model(x, s, t), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(du, ref, rtol=1e-6, atol=1e-6, msg=f"mode {mode}")


def test_modes_give_the_same_parameter_gradient():
    model = _mlp(2, num_classes=3)
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(32, 2, generator=g, dtype=F64), torch.randn(32, 2, generator=g, dtype=F64)
    s, t = _st(32, g)
    label = torch.randint(0, 4, (32,), generator=g)
    grads = {}
    for mode in JVP_MODES:
        model.zero_grad()
        loss, _ = mean_flow_loss(model, PATH, x0, x1, s, t, label, jvp=mode, fd_eps=1e-6)
        loss.mean().backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in model.parameters()])
    for mode in JVP_MODES:
        torch.testing.assert_close(grads[mode], grads["tangent"], rtol=1e-5, atol=1e-7, msg=mode)


def test_loss_gradient_ignores_the_target():
    # stop-gradient: d loss / d theta = 2 w (u - u_tgt) du/dtheta / D, with u_tgt held fixed
    model = _mlp(3)
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(8, 2, generator=g, dtype=F64), torch.randn(8, 2, generator=g, dtype=F64)
    s, t = _st(8, g)
    loss, err = mean_flow_loss(model, PATH, x0, x1, s, t, weight_power=0.0)
    loss.sum().backward()
    g_loss = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    xs = PATH.sample(x0, x1, s)
    _, target = mean_flow_target(model, xs.x_t, s, t, xs.dx_t)
    (model(xs.x_t, s, t) - target).square().mean(1).sum().backward()
    torch.testing.assert_close(g_loss, torch.cat([p.grad.flatten() for p in model.parameters()]))


class _Wrapper(nn.Module):
    """Stands in for torch.compile's OptimizedModule: holds the network as _orig_mod, forwards every call."""

    def __init__(self, net):
        super().__init__()
        self._orig_mod = net

    def forward(self, *args, **kwargs):
        return self._orig_mod(*args, **kwargs)


def test_tangent_mode_calls_through_the_wrapper():
    # DDP all-reduces gradients only for calls through its forward: the tangent pass must go through it
    model = _mlp(13)
    wrapped = _Wrapper(model)
    calls = []
    wrapped.register_forward_pre_hook(lambda mod, args: calls.append(1))
    g = torch.Generator().manual_seed(13)
    x, v = torch.randn(8, 2, generator=g, dtype=F64), torch.randn(8, 2, generator=g, dtype=F64)
    s, t = _st(8, g)
    u, du = average_velocity_jvp(wrapped, x, s, t, v, mode="tangent")
    assert calls == [1]
    u_ref, du_ref = average_velocity_jvp(model, x, s, t, v, mode="func")
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(du, du_ref)


# ------------------------------------------------------------------------------------------------ (c) training
@pytest.mark.parametrize("tangent_velocity", ["conditional", "model"])
def test_training_learns_the_gaussian_average_velocity(tangent_velocity):
    """Tiny MLP, 2000 steps of 512: relative RMSE of u over an (s, t) grid below 0.1 (measured 0.06-0.075)."""
    torch.manual_seed(0)
    model = MLP(2, 64, 2, n_times=2, n_frequencies=8)
    model.time_embed = FourierTime(8, 1.0, 10.0)  # low frequencies: MeanFlow's target differentiates in time
    method = MeanFlow(PATH, UniformTime(), ratio=0.5, weight_power=0.5, tangent_velocity=tangent_velocity)
    steps, lr = 2000, 3e-3
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(1)
    mu, sig = MU.float(), SIG.float()
    for _ in range(steps):
        x0 = torch.randn(512, 2, generator=g)
        x1 = mu + sig * torch.randn(512, 2, generator=g)
        out = method.loss(model, CoupledBatch(x0, x1, None), g)
        opt.zero_grad()
        out.loss.mean().backward()
        opt.step()
        sched.step()
    num = den = 0.0
    with torch.no_grad():
        for a in (0.0, 0.25, 0.5, 0.75):
            for b in (0.0, 0.25, 0.5, 0.75, 1.0):
                if b < a:
                    continue
                s, t = torch.full((1024,), a, dtype=F64), torch.full((1024,), b, dtype=F64)
                x = s[:, None] * MU + _std(s[:, None]) * torch.randn(1024, 2, generator=g, dtype=F64)
                ue = u_exact(x, s, t)
                um = model(x.float(), s.float(), t.float()).double()
                num += (um - ue).square().mean().item()
                den += ue.square().mean().item()
    assert math.sqrt(num / den) < 0.1


# ------------------------------------------------------------------------------------------------ (d) s = t is FM
def test_all_equal_times_with_p0_is_flow_matching_exactly():
    model = _mlp(4, dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    s, t = sample_interval_times(64, 0.0, UniformTime(), g)
    assert torch.equal(s, t)
    for mode in JVP_MODES:
        loss, err = mean_flow_loss(model, PATH, x0, x1, s, t, weight_power=0.0, jvp=mode)
        fm = flow_matching_loss(model, PATH, x0, x1, t)
        assert torch.equal(loss, fm) and torch.equal(err, fm), mode


# ------------------------------------------------------------------------------------------------ (e) sampling
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_exact_u_samples_the_target_in_any_number_of_jumps(steps):
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    sol = average_velocity_sample(u_exact, x0, steps=steps)
    assert sol.nfe == steps
    torch.testing.assert_close(sol.x, MU + SIG * x0, rtol=1e-6, atol=1e-6)


def test_additivity_gap_vanishes_for_the_exact_u_only():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(32, 2, generator=g, dtype=F64)
    r = torch.rand(32, generator=g, dtype=F64) * 0.3
    s, t = r + 0.3, r + 0.6
    assert additivity_gap(u_exact, x, r, s, t).max() < 1e-20
    gap = additivity_gap(lambda a, b, c: _mlp(7)(a, b, c), x, r, s, t)
    assert gap.shape == (32,) and bool((gap > 1e-8).all())
    with pytest.raises(ValueError, match="s <= t"):
        additivity_gap(u_exact, x, s, r, t)


# ------------------------------------------------------------------------------------------------ (f) weight, inputs
def test_adaptive_weight_values():
    err = torch.tensor([0.0, 1.0, 3.0])
    torch.testing.assert_close(adaptive_weight(err, 0.5, 1e-3), (err + 1e-3).rsqrt())
    torch.testing.assert_close(adaptive_weight(err, 1.0, 1e-2), 1 / (err + 1e-2))
    assert torch.equal(adaptive_weight(err, 0.0, 1e-3), torch.ones(3))
    w = adaptive_weight(err.clone().requires_grad_(), 1.0, 1e-3)
    assert not w.requires_grad
    with pytest.raises(ValueError, match="p must be >= 0"):
        adaptive_weight(err, -0.5, 1e-3)


def test_sample_interval_times():
    g = torch.Generator().manual_seed(8)
    s, t = sample_interval_times(20000, 0.25, UniformTime(), g)
    assert s.shape == t.shape == (20000,) and bool((s <= t).all())
    assert abs((s == t).float().mean().item() - 0.75) < 0.02
    # the point's time s keeps the law of min(a, b) in every row (the end collapses onto s)
    assert abs(s[s == t].mean().item() - 1 / 3) < 0.01 and abs(s[s < t].mean().item() - 1 / 3) < 0.02
    s, t = sample_interval_times(1000, 1.0, LogitNormalTime(0.4, 1.0), g, dtype=F64)
    assert s.dtype == F64 and bool((s < t).all())
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            sample_interval_times(4, bad, UniformTime(), g)
        with pytest.raises(ValueError, match="full_jump"):
            sample_interval_times(4, 0.5, UniformTime(), g, full_jump=bad)


def test_full_jump_rows_span_the_whole_interval_and_nothing_else_moves():
    # 60% of rows s != t, a quarter of those (15% of all rows) exactly (0, 1); the rest keep their law.
    g = torch.Generator().manual_seed(9)
    s, t = sample_interval_times(40000, 0.6, UniformTime(), g, full_jump=0.25)
    whole = (s == 0) & (t == 1)
    assert abs(whole.float().mean().item() - 0.15) < 0.01
    assert abs((s == t).float().mean().item() - 0.4) < 0.01
    rest = (s < t) & ~whole
    assert abs(s[rest].mean().item() - 1 / 3) < 0.01 and abs(t[rest].mean().item() - 2 / 3) < 0.01
    plain_s, plain_t = sample_interval_times(100, 0.6, UniformTime(), torch.Generator().manual_seed(3))
    same_s, same_t = sample_interval_times(100, 0.6, UniformTime(), torch.Generator().manual_seed(3),
                                           full_jump=0.0)
    assert torch.equal(plain_s, same_s) and torch.equal(plain_t, same_t)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="ratio"):
        MeanFlow(PATH, UniformTime(), ratio=1.2)
    with pytest.raises(ValueError, match="label_dropout"):
        MeanFlow(PATH, UniformTime(), label_dropout=-0.1)
    with pytest.raises(ValueError, match="p must be >= 0, got -1"):
        MeanFlow(PATH, UniformTime(), weight_power=-1)
    with pytest.raises(ValueError, match="unknown jvp mode 'jax'; choose from: tangent, func"):
        MeanFlow(PATH, UniformTime(), jvp="jax")
    with pytest.raises(ValueError, match="conditional model"):
        MeanFlow(PATH, UniformTime(), omega=2.0)
    with pytest.raises(ValueError, match="label_dropout > 0"):
        MeanFlow(PATH, UniformTime(), num_classes=3, omega=2.0)
    model = _mlp(9)
    x = torch.randn(4, 2, dtype=F64)
    s, t = torch.tensor([0.1, 0.5, 0.6, 0.2], dtype=F64), torch.tensor([0.2, 0.4, 0.9, 0.2], dtype=F64)
    with pytest.raises(ValueError, match="row 1 has s=0.5 > t=0.4"):
        mean_flow_loss(model, PATH, x, x, s, t)
    with pytest.raises(ValueError, match="s <= t"):
        mean_flow_target(model, x, s, t, x)
    with pytest.raises(ValueError, match="conditional model"):
        guided_velocity_target(model, x, s, x, None, 0, omega=1.5)


def test_tangent_mode_falls_back_to_func_for_a_network_without_a_tangent_pass():
    x = torch.randn(4, 2, dtype=F64)
    s, t = torch.tensor([0.1, 0.2, 0.6, 0.2], dtype=F64), torch.tensor([0.2, 0.4, 0.9, 0.2], dtype=F64)
    u, du = average_velocity_jvp(u_exact, x, s, t, x, mode="tangent")
    u_ref, du_ref = average_velocity_jvp(u_exact, x, s, t, x, mode="func")
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(du, du_ref)


def test_method_loss_and_logs():
    model = _mlp(10, dtype=torch.float32, num_classes=3)
    g = torch.Generator().manual_seed(10)
    batch = CoupledBatch(torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g),
                         torch.randint(0, 3, (32,), generator=g))
    method = MeanFlow(PATH, UniformTime(), num_classes=3, label_dropout=0.2, weight_power=1.0, omega=2.0)
    out = method.loss(model, batch, g)
    assert out.loss.shape == (32,) and out.logs["loss_unweighted"].shape == (32,)
    err = out.logs["loss_unweighted"]
    torch.testing.assert_close(out.loss, err / (err + 1e-3))  # p = 1: the weighted loss sits near 1
    out.loss.mean().backward()
    assert all(p.grad is not None for p in model.hidden.parameters())


# ------------------------------------------------------------------------------------------------ (g) dropout RNG
class _DropoutU(nn.Module):
    """u(x, s, t) with dropout, no forward_with_tangent."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Dropout(0.5), nn.Linear(64, 2))

    def forward(self, x, time, end_time=None, label=None):
        end = time if end_time is None else end_time
        return self.net(torch.cat([x, time[:, None], end[:, None]], dim=1))


def test_two_pass_modes_reuse_the_dropout_masks():
    torch.manual_seed(11)
    model = _DropoutU().double().train()
    g = torch.Generator().manual_seed(11)
    x0, x1 = torch.randn(64, 2, generator=g, dtype=F64), torch.randn(64, 2, generator=g, dtype=F64)
    s, t = _st(64, g)
    out = {}
    for mode in ("func", "func_nograd", "finite_difference"):
        torch.manual_seed(123)
        model.zero_grad()
        loss, _ = mean_flow_loss(model, PATH, x0, x1, s, t, jvp=mode, fd_eps=1e-6)
        loss.mean().backward()
        out[mode] = (loss.detach(), model.net[0].weight.grad.clone(), torch.rand(3))
    for mode in ("func_nograd", "finite_difference"):
        torch.testing.assert_close(out[mode][0], out["func"][0], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(out[mode][1], out["func"][1], rtol=1e-5, atol=1e-9)
        # the RNG advanced by exactly one forward's draws, as in the joint mode
        assert torch.equal(out[mode][2], out["func"][2])
    torch.manual_seed(123)  # no tangent pass of its own: "tangent" falls back to "func", same loss
    fallback, _ = mean_flow_loss(model, PATH, x0, x1, s, t, jvp="tangent")
    torch.testing.assert_close(fallback.detach(), out["func"][0])


# ------------------------------------------------------------------------------------------------ (h) guidance
def test_guidance_folding():
    model = _mlp(12, num_classes=3)
    g = torch.Generator().manual_seed(12)
    x0, x1 = torch.randn(16, 2, generator=g, dtype=F64), torch.randn(16, 2, generator=g, dtype=F64)
    s, t = _st(16, g)
    label = torch.tensor([0, 1, 2, 3] * 4)  # 3 = null (dropped)
    xs = PATH.sample(x0, x1, s)
    v = xs.dx_t

    calls = []

    def counting(*a, **k):
        calls.append(1)
        return model(*a, **k)

    assert guided_velocity_target(counting, xs.x_t, s, v, label, 3, 1.0, 0.0) is v and not calls
    plain = mean_flow_loss(model, PATH, x0, x1, s, t, label, num_classes=3)
    same = mean_flow_loss(model, PATH, x0, x1, s, t, label, num_classes=3, omega=1.0, kappa=0.0)
    assert torch.equal(plain[0], same[0])

    omega, kappa = 1.5, 0.3
    vt = guided_velocity_target(model, xs.x_t, s, v, label, 3, omega, kappa)
    with torch.no_grad():
        cond = model(xs.x_t, s, s, label=label)
        null = model(xs.x_t, s, s, label=torch.full_like(label, 3))
    manual = torch.where((label != 3)[:, None], omega * v + kappa * cond + (1 - omega - kappa) * null, v)
    torch.testing.assert_close(vt, manual)
    assert not vt.requires_grad
    # v_tilde replaces v in the tangent and in the target
    _, ref = torch.func.jvp(lambda a, b: model(a, b, t, label=label), (xs.x_t, s), (manual, torch.ones_like(s)))
    target = manual + (t - s)[:, None] * ref
    loss, err = mean_flow_loss(model, PATH, x0, x1, s, t, label, weight_power=0.0, omega=omega, kappa=kappa,
                               num_classes=3)
    torch.testing.assert_close(err, (model(xs.x_t, s, t, label=label) - target).square().mean(1))


def test_build_method_passes_the_config_fields():
    from straightflow.training.build import build_method
    from straightflow.training.config import RunConfig, apply_overrides

    cfg = apply_overrides(RunConfig(), {"method.name": "meanflow", "method.ratio": 0.3, "method.jvp": "func",
                                        "method.weight_power": 1.0, "method.weight_eps": 1e-2,
                                        "method.tangent_velocity": "model"})
    m = build_method(cfg)
    assert isinstance(m, MeanFlow)
    assert (m.ratio, m.jvp, m.weight_power, m.weight_eps, m.omega, m.kappa) == (0.3, "func", 1.0, 1e-2, 1.0, 0.0)
    assert m.tangent_velocity == "model"
    with pytest.raises(ValueError, match="unknown tangent velocity 'modle'; choose from: conditional, model"):
        build_method(apply_overrides(cfg, {"method.tangent_velocity": "modle"}))


# ------------------------------------------------------------------------------------------------ (g2) iMF tangent
@pytest.mark.parametrize("jvp", ["tangent", "func"])
def test_model_tangent_leaves_only_the_additive_conditional_noise_in_the_target(jvp):
    # At the exact u, u(x, s, s) is the marginal v, so with the model's velocity in the tangent the target
    # differs from u by exactly v_marginal - v_conditional; with the conditional velocity there, J_u multiplies
    # that noise as well: (I + (t - s) J_x u)(v_marginal - v_conditional).
    class ExactU(nn.Module):
        def forward(self, x, s, t, label=None):
            return u_exact(x, s, t)

    g = torch.Generator().manual_seed(21)
    x0 = torch.randn(128, 2, generator=g, dtype=F64)
    x1 = MU + SIG * torch.randn(128, 2, generator=g, dtype=F64)
    s, t = _st(128, g, gap=1e-2)
    sample = PATH.sample(x0, x1, s)
    noise = v_exact(sample.x_t, s) - sample.dx_t
    losses = {}
    for tv in ("model", "conditional"):
        loss, err = mean_flow_loss(ExactU(), PATH, x0, x1, s, t, weight_power=0.0, jvp=jvp, tangent_velocity=tv)
        losses[tv] = err
    torch.testing.assert_close(losses["model"], noise.square().mean(1))
    assert (losses["conditional"] - losses["model"]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="unknown tangent velocity"):
        mean_flow_loss(ExactU(), PATH, x0, x1, s, t, tangent_velocity="marginal")


# ------------------------------------------------------------------------------------------------ (h) teacher
def test_teacher_marginal_velocity_makes_the_exact_u_target_error_vanish_where_conditional_v_does_not():
    # With the marginal v of a teacher, the exact u satisfies the identity row by row; with the conditional
    # velocity x1 - x0 it only does so in expectation, so each row's squared error is positive.
    g = torch.Generator().manual_seed(12)
    x0 = torch.randn(256, 2, generator=g, dtype=F64)
    x1 = MU + SIG * torch.randn(256, 2, generator=g, dtype=F64)
    batch = CoupledBatch(x0, x1, None)

    def exact_u(x, s, t, label=None):
        return u_exact(x, s, t)

    teacher = MeanFlow(PATH, UniformTime(), weight_power=0.0, jvp="func", ratio=1.0,
                       teacher=lambda x, t, label=None: v_exact(x, t))
    plain = MeanFlow(PATH, UniformTime(), weight_power=0.0, jvp="func", ratio=1.0)
    with_teacher = teacher.loss(exact_u, batch, torch.Generator().manual_seed(3)).loss
    conditional = plain.loss(exact_u, batch, torch.Generator().manual_seed(3)).loss
    assert with_teacher.max() < 1e-20
    assert conditional.mean() > 1e-2


@pytest.mark.parametrize("jvp", ["tangent", "finite_difference"])
def test_lagrangian_teacher_target_is_the_exact_u_at_the_teachers_flow_map_and_not_elsewhere(jvp):
    # The jump X = x_s + (t - s) u follows the teacher's flow iff u + (t - s) d/dt u = v_T(X, t): at the exact
    # average velocity of the teacher's flow the Lagrangian target equals u row by row (up to the central
    # difference's O(e^2) in t); a u off by a constant misses it by about that constant.
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(256, 2, generator=g, dtype=F64)
    x1 = MU + SIG * torch.randn(256, 2, generator=g, dtype=F64)
    batch = CoupledBatch(x0, x1, None)

    def teacher(x, t, label=None):
        return v_exact(x, t)

    class Exact(nn.Module):  # the tangent pass along (0, 0, 1) by torch.func, as a network's own would give it
        def __init__(self, shift=0.0):
            super().__init__()
            self.shift = shift

        def forward(self, x, s, t, label=None):
            return u_exact(x, s, t) + self.shift

        def forward_with_tangent(self, x, s, t, label, dx, ds, dt):
            return torch.func.jvp(lambda a, b, c: self(a, b, c), (x, s, t), (dx, ds, dt))

    method = MeanFlow(PATH, UniformTime(), weight_power=0.0, jvp=jvp, ratio=1.0, teacher=teacher,
                      teacher_target="lagrangian")
    exact = method.loss(Exact(), batch, torch.Generator().manual_seed(3)).loss
    shifted = method.loss(Exact(0.1), batch, torch.Generator().manual_seed(3)).loss
    assert exact.max() < 1e-10
    assert shifted.mean() > 1e-3
    with pytest.raises(ValueError, match="unknown teacher target 'euler'; choose from: eulerian, lagrangian"):
        MeanFlow(PATH, UniformTime(), teacher=teacher, teacher_target="euler")


def test_time_derivative_by_the_networks_tangent_pass_matches_a_central_difference_in_t():
    from straightflow.methods.mean_flow import average_velocity_dt
    from straightflow.models.unet import UNet

    torch.manual_seed(0)
    nets = [(_mlp(seed=1), torch.randn(8, 2, dtype=F64), None),
            (UNet((1, 8, 8), channels=8, channel_mult=(1, 2), n_times=2, num_classes=3).double(),
             torch.randn(8, 1, 8, 8, dtype=F64), torch.randint(0, 3, (8,)))]
    for net, x, label in nets:
        for p in net.parameters():  # (the U-Net's output layer starts at zero)
            p.data.normal_(0, 0.3)
        s = 0.5 * torch.rand(8, dtype=F64)
        t = s + 0.3
        _, exact = average_velocity_dt(net, x, s, t, label, "tangent")
        _, central = average_velocity_dt(net, x, s, t, label, "finite_difference", 1e-4)
        assert (exact - central).abs().max() < 1e-6 * exact.abs().max() + 1e-5
        assert exact.abs().max() > 0.1


def test_teacher_guidance_is_classifier_free_guidance_of_the_teacher():
    from straightflow.methods.mean_flow import teacher_velocity

    def teacher(x, t, label=None):  # v(x | c) = c, v(x | null = 3) = -1
        return torch.where(label[:, None] == 3, -torch.ones_like(x), label[:, None].to(x.dtype).expand_as(x))

    x, t = torch.zeros(3, 2), torch.rand(3)
    label = torch.tensor([0, 2, 3])
    v = teacher_velocity(teacher, x, t, label, num_classes=3, omega=2.0)
    torch.testing.assert_close(v[:, 0], torch.tensor([-1 + 2 * (0 + 1), -1 + 2 * (2 + 1), -1.0]))
    with pytest.raises(ValueError, match="kappa=0.5 mixes in the student's own"):
        MeanFlow(PATH, UniformTime(), num_classes=3, label_dropout=0.1, omega=2.0, kappa=0.5, teacher=teacher)
