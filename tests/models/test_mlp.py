"""The MLP's own tangent pass is the true Jacobian-vector product, and its inputs change its output."""

import pytest
import torch

from straightflow.models.mlp import MLP


@pytest.mark.parametrize("kind", ["s,t-s", "s,t", "t,t-s"])
def test_forward_with_tangent_equals_autograd_jvp(kind):
    torch.manual_seed(0)
    model = MLP(3, width=32, depth=3, n_times=2, time_inputs=kind, num_classes=4).double()
    x, dx = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    s, t = torch.rand(7, dtype=torch.float64), torch.rand(7, dtype=torch.float64)
    ds, dt = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    label = torch.randint(0, 5, (7,))
    out, dout = model.forward_with_tangent(x, s, t, label, dx, ds, dt)
    ref_out, ref_dout = torch.autograd.functional.jvp(
        lambda a, b, c: model(a, b, c, label=label), (x, s, t), (dx, ds, dt)
    )
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(dout, ref_dout, rtol=1e-10, atol=1e-10)


def test_tangent_side_carries_no_gradient_to_weights():
    model = MLP(2, width=16, depth=2, n_times=2)
    x = torch.randn(5, 2)
    s = torch.zeros(5)
    _, dout = model.forward_with_tangent(x, s, torch.ones(5), None, torch.randn(5, 2), torch.ones(5), torch.zeros(5))
    assert not dout.requires_grad


def test_one_time_model_tangent_matches_finite_difference():
    torch.manual_seed(1)
    model = MLP(2, width=16, depth=2).double()
    x, dx = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t, dt = torch.rand(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    _, dout = model.forward_with_tangent(x, t, None, None, dx, dt, None)
    eps = 1e-6
    fd = (model(x + eps * dx, t + eps * dt) - model(x - eps * dx, t - eps * dt)) / (2 * eps)
    torch.testing.assert_close(dout, fd, rtol=1e-6, atol=1e-7)


def test_two_time_model_called_with_one_time_is_u_at_t_t():
    model = MLP(2, width=16, depth=2, n_times=2)
    x, t = torch.randn(3, 2), torch.rand(3)
    torch.testing.assert_close(model(x, t), model(x, t, t))


def test_time_end_time_and_label_each_change_the_output():
    torch.manual_seed(2)
    model = MLP(2, width=16, depth=2, n_times=2, num_classes=3)
    x, s, t = torch.randn(4, 2), torch.full((4,), 0.2), torch.full((4,), 0.7)
    base = model(x, s, t, label=torch.zeros(4, dtype=torch.long))
    assert not torch.allclose(base, model(x, s + 0.1, t, label=torch.zeros(4, dtype=torch.long)))
    assert not torch.allclose(base, model(x, s, t - 0.1, label=torch.zeros(4, dtype=torch.long)))
    assert not torch.allclose(base, model(x, s, t, label=torch.ones(4, dtype=torch.long)))


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        MLP(2)(torch.randn(4, 3), torch.rand(4))


@pytest.mark.parametrize("features", ["raw", "raw+fourier"])
def test_raw_time_features_carry_the_time_and_its_tangent(features):
    torch.manual_seed(0)
    model = MLP(2, 32, 2, n_times=2, n_frequencies=4, time_features=features).double()
    assert model.time_embed.dim == (1 if features == "raw" else 9)
    x = torch.randn(5, 2, dtype=torch.float64)
    s, t = torch.rand(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    dx, ds, dt = torch.randn_like(x), torch.randn_like(s), torch.randn_like(t)
    _, dout = model(x, s, t, tangent=(dx, ds, dt))
    _, ref = torch.func.jvp(lambda a, b, c: model(a, b, c), (x, s, t), (dx, ds, dt))
    assert torch.allclose(dout, ref, atol=1e-10)
    assert model.time_embed(torch.tensor([0.25], dtype=torch.float64))[0, 0].item() == 0.25  # tau itself first


def test_unknown_time_features_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown time_features 'sine'"):
        MLP(2, 8, 1, time_features="sine")
