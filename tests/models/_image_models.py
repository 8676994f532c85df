"""Shared helpers of the U-Net and DiT tests (not collected: no test_ prefix)."""

import torch

from straightflow.methods.mean_flow import average_velocity_jvp


def perturb(model: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    """Add noise to every parameter, so the zero-initialised output layers do not hide the inputs."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def check_inputs_change_output(model, shape, n_times: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    s, t = torch.full((4,), 0.2, dtype=torch.float64), torch.full((4,), 0.7, dtype=torch.float64)
    label = torch.tensor([0, 1, 2, 3])
    base = model(x, s, t if n_times == 2 else None, label=label)
    assert base.shape == x.shape
    assert not torch.allclose(model(x, s + 0.1, t if n_times == 2 else None, label=label), base)
    if n_times == 2:
        assert not torch.allclose(model(x, s, t + 0.1, label=label), base)
    assert not torch.allclose(model(x, s, t if n_times == 2 else None, label=(label + 1) % 4), base)
    assert not torch.allclose(model(x, s, t if n_times == 2 else None, label=None), base)  # the null label


def check_jvp_modes_match_finite_difference(model, shape) -> None:
    """d/ds u(x + e v, s + e, t) by every forward-mode JVP path equals a central difference (float64)."""
    torch.manual_seed(2)
    x, v = torch.randn(3, *shape, dtype=torch.float64), torch.randn(3, *shape, dtype=torch.float64)
    s = torch.tensor([0.1, 0.4, 0.6], dtype=torch.float64)
    t = torch.tensor([0.5, 0.9, 0.6], dtype=torch.float64)
    label = torch.tensor([1, 4, 2])
    eps = 1e-6
    with torch.no_grad():
        fd = (model(x + eps * v, s + eps, t, label=label) - model(x - eps * v, s - eps, t, label=label)) / (2 * eps)
    for mode in ("tangent", "func", "func_nograd"):
        u, du = average_velocity_jvp(model, x, s, t, v, label, mode=mode)
        torch.testing.assert_close(u, model(x, s, t, label=label), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(du, fd, rtol=1e-6, atol=1e-6 * float(fd.abs().max()), msg=mode)
        assert not du.requires_grad


def check_tangent_pass_keeps_the_primal_gradient(model, shape) -> None:
    x, v = torch.randn(2, *shape, dtype=torch.float64), torch.randn(2, *shape, dtype=torch.float64)
    s, t = torch.tensor([0.1, 0.3], dtype=torch.float64), torch.tensor([0.8, 0.9], dtype=torch.float64)
    out, _ = model.forward_with_tangent(x, s, t, None, v, torch.ones_like(s), torch.zeros_like(t))
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()), allow_unused=True)
    ref = torch.autograd.grad(model(x, s, t).square().sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(grads, ref, strict=True):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
