"""Each hand-written tangent rule equals torch.func.jvp of the same layer (float64), and carries no graph."""

import pytest
import torch
import torch.nn.functional as F
from _image_models import perturb
from torch import nn

from straightflow.models import tangent as tg
from straightflow.models.conditioning import TimeLabelEmbedding
from straightflow.models.dit import DiT, DiTBlock
from straightflow.models.unet import AttnBlock, ResBlock, UNet, Upsample

D = torch.float64


def _randn(*shape):
    return torch.randn(*shape, dtype=D)


def check_rule(dual, primal, inputs, tangents, rtol=1e-9):
    """dual(*inputs, *tangents) == (primal(*inputs), jvp(primal)(tangents)); value bit for bit, no graph."""
    value, tangent = dual(*inputs, *tangents)
    ref_value, ref_tangent = torch.func.jvp(primal, tuple(inputs), tuple(tangents))
    torch.testing.assert_close(value, primal(*inputs), rtol=0, atol=0)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, ref_tangent, rtol=rtol, atol=rtol * float(ref_tangent.detach().abs().max()))
    assert not tangent.requires_grad
    none_value, none_tangent = dual(*inputs, *[None] * len(tangents))
    assert none_tangent is None
    torch.testing.assert_close(none_value, value, rtol=0, atol=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_linear_tangent_is_weight_times_tangent():
    layer = nn.Linear(5, 7).double()
    check_rule(lambda x, dx: tg.linear(layer, x, dx), layer, [_randn(3, 4, 5)], [_randn(3, 4, 5)])


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_conv2d_tangent_uses_the_layers_stride_and_padding(stride, padding):
    layer = nn.Conv2d(3, 4, 3, stride=stride, padding=padding).double()
    check_rule(lambda x, dx: tg.conv2d(layer, x, dx), layer, [_randn(2, 3, 8, 8)], [_randn(2, 3, 8, 8)])


def test_silu_tangent_is_closed_form_derivative():
    check_rule(tg.silu, F.silu, [_randn(4, 9) * 3], [_randn(4, 9)])


def test_gelu_tanh_tangent_is_closed_form_derivative():
    check_rule(tg.gelu_tanh, lambda a: F.gelu(a, approximate="tanh"), [_randn(4, 9) * 3], [_randn(4, 9)])


@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm_tangent_with_affine_and_any_memory_format(channels_last):
    norm = perturb(nn.GroupNorm(2, 6).double())
    x, dx = _randn(3, 6, 4, 5), _randn(3, 6, 4, 5)
    check_rule(lambda a, da: tg.group_norm(norm, a, da), norm, [x], [dx])
    if channels_last:  # torch.func.jvp of group_norm fails on channels-last input: compare with the above
        cl = torch.channels_last
        value, tangent = tg.group_norm(norm, x.to(memory_format=cl), dx.to(memory_format=cl))
        torch.testing.assert_close(value, norm(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(tangent, tg.group_norm(norm, x, dx)[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm_tangent(affine):
    norm = nn.LayerNorm(8, elementwise_affine=affine, eps=1e-6).double()
    if affine:
        perturb(norm)
    check_rule(lambda a, da: tg.layer_norm(norm, a, da), norm, [_randn(2, 5, 8)], [_randn(2, 5, 8)])


def test_attention_tangent_is_softmax_derivative():
    q, k, v = _randn(2, 3, 6, 4), _randn(2, 3, 6, 4), _randn(2, 3, 6, 4)
    dq, dk, dv = _randn(2, 3, 6, 4), _randn(2, 3, 6, 4), _randn(2, 3, 6, 4)

    def plain(q_, k_, v_):
        return F.softmax(q_ @ k_.transpose(-1, -2) / 2.0, dim=-1) @ v_

    value, tangent = tg.attention(q, k, v, dq, dk, dv)
    ref_value, ref_tangent = torch.func.jvp(plain, (q, k, v), (dq, dk, dv))
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, ref_tangent, rtol=1e-10, atol=1e-10)
    assert tg.attention(q, k, v)[1] is None


def test_modulate_tangent_is_product_rule():
    h, scale, shift = _randn(2, 5, 4), _randn(2, 1, 4), _randn(2, 1, 4)
    check_rule(lambda a, b, c, da, db, dc: tg.modulate(a, da, b, db, c, dc), lambda a, b, c: a * (1 + b) + c,
               [h, scale, shift], [_randn(2, 5, 4), _randn(2, 1, 4), _randn(2, 1, 4)])


def test_nearest_upsampling_tangent_is_the_same_linear_map():
    check_rule(tg.upsample_nearest, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
               [_randn(2, 3, 4, 4)], [_randn(2, 3, 4, 4)])


def test_dropout_shares_its_mask_between_value_and_tangent():
    drop = nn.Dropout(0.5).train()
    x = _randn(64, 32)
    value, tangent = tg.dropout(drop, x, 2 * x)
    torch.testing.assert_close(tangent, 2 * value, rtol=0, atol=0)
    assert 0.3 < float((value == 0).double().mean()) < 0.7
    torch.manual_seed(5)
    plain = drop(x)
    torch.manual_seed(5)
    torch.testing.assert_close(tg.dropout(drop, x, x)[0], plain, rtol=0, atol=0)  # the plain forward's mask


# ------------------------------------------------------------------------------------------ blocks
def _block_check(block, inputs, tangents, rtol=1e-9):
    check_rule(lambda *a: block(*a[: len(inputs)], *a[len(inputs):]), lambda *a: block(*a)[0], inputs, tangents,
               rtol)


def test_resblock_tangent():
    block = perturb(ResBlock(4, 6, 8, 0.0).double())
    _block_check(block, [_randn(2, 4, 6, 6), _randn(2, 8)], [_randn(2, 4, 6, 6), _randn(2, 8)])


def test_attention_block_tangent():
    block = perturb(AttnBlock(8, 2).double())
    _block_check(block, [_randn(2, 8, 4, 4)], [_randn(2, 8, 4, 4)])


def test_upsample_block_tangent():
    block = perturb(Upsample(3).double())
    _block_check(block, [_randn(2, 3, 4, 4)], [_randn(2, 3, 4, 4)])


def test_dit_block_tangent():
    block = perturb(DiTBlock(16, 2, 2.0, 0.0).double())
    _block_check(block, [_randn(2, 5, 16), _randn(2, 16)], [_randn(2, 5, 16), _randn(2, 16)])


@pytest.mark.parametrize("n_times, kind", [(1, "s,t-s"), (2, "s,t-s"), (2, "s,t"), (2, "t,t-s")])
def test_time_label_embedding_tangent_over_both_times(n_times, kind):
    embed = perturb(TimeLabelEmbedding(8, n_times, kind, n_frequencies=4, num_classes=3).double())
    label = torch.tensor([0, 3, 1])
    s, t, ds, dt = torch.rand(3, dtype=D), torch.rand(3, dtype=D), _randn(3), _randn(3)
    value, tangent = embed.dual(s, t, label, 3, ds, dt)
    if n_times == 1:
        ref = torch.func.jvp(lambda a: embed(a, None, label, 3), (s,), (ds,))
    else:
        ref = torch.func.jvp(lambda a, b: embed(a, b, label, 3), (s, t), (ds, dt))
    torch.testing.assert_close(value, ref[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, ref[1], rtol=1e-10, atol=1e-10)


def test_missing_end_time_moves_with_time_and_missing_end_tangent_stays_put():
    embed = perturb(TimeLabelEmbedding(8, 2, n_frequencies=4).double())
    s, ds = torch.rand(3, dtype=D), _randn(3)
    _, tangent = embed.dual(s, None, None, 3, ds, None)
    ref = torch.func.jvp(lambda a: embed(a, a, None, 3), (s,), (ds,))[1]  # end time = time
    torch.testing.assert_close(tangent, ref, rtol=1e-10, atol=1e-10)
    t = torch.rand(3, dtype=D) + 1
    _, tangent = embed.dual(s, t, None, 3, ds, None)
    ref = torch.func.jvp(lambda a: embed(a, t, None, 3), (s,), (ds,))[1]  # end time fixed
    torch.testing.assert_close(tangent, ref, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_whole_network_tangent_equals_torch_func_jvp_along_every_input(arch):
    if arch == "unet":
        model = UNet((2, 8, 8), channels=8, channel_mult=(1, 2), attn_resolutions=(4,), n_times=2, num_classes=3,
                     heads=2, n_frequencies=4)
    else:
        model = DiT((2, 8, 8), width=16, depth=2, heads=2, patch_size=2, n_times=2, num_classes=3, n_frequencies=4)
    model = perturb(model.double())
    x, s, t, label = _randn(3, 2, 8, 8), torch.rand(3, dtype=D), torch.rand(3, dtype=D), torch.tensor([0, 3, 2])
    dx, ds, dt = _randn(3, 2, 8, 8), _randn(3), _randn(3)
    u, du = model(x, s, t, label=label, tangent=(dx, ds, dt))
    ref_u, ref_du = torch.func.jvp(lambda a, b, c: model(a, b, c, label=label), (x, s, t), (dx, ds, dt))
    torch.testing.assert_close(u, model(x, s, t, label=label), rtol=0, atol=0)
    torch.testing.assert_close(u, ref_u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(du, ref_du, rtol=1e-9, atol=1e-9 * float(ref_du.abs().max()))
    assert not du.requires_grad


def test_tangent_pass_runs_under_torch_compile():
    model = perturb(UNet((1, 8, 8), channels=8, channel_mult=(1, 2), n_times=2, heads=2, n_frequencies=4))
    x, s, t, dx = torch.randn(2, 1, 8, 8), torch.rand(2), torch.rand(2), torch.randn(2, 1, 8, 8)
    tangent = (dx, torch.ones(2), torch.zeros(2))
    eager_u, eager_du = model(x, s, t, tangent=tangent)
    u, du = torch.compile(model)(x, s, t, tangent=tangent)
    torch.testing.assert_close(u, eager_u, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(du, eager_du, rtol=1e-4, atol=1e-4 * float(eager_du.abs().max()))
    u.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["mlp", "unet", "dit"])
def test_widened_teacher_weights_make_the_student_equal_the_teacher_at_any_end_time(arch):
    from straightflow.models.embeddings import widen_to_two_times
    from straightflow.models.mlp import MLP

    def make(n_times):
        torch.manual_seed(3)
        if arch == "mlp":
            return MLP(3, 16, 2, n_times=n_times, num_classes=3, n_frequencies=4).double()
        if arch == "unet":
            return UNet((1, 8, 8), channels=8, channel_mult=(1, 2), n_times=n_times, num_classes=3, heads=2,
                        n_frequencies=4).double()
        return DiT((1, 8, 8), width=16, depth=1, heads=2, n_times=n_times, num_classes=3, n_frequencies=4).double()

    teacher, student = perturb(make(1)), make(2)
    student.load_state_dict(widen_to_two_times(teacher.state_dict(), student))
    x = _randn(4, 3) if arch == "mlp" else _randn(4, 1, 8, 8)
    s, t, label = torch.rand(4, dtype=D), torch.rand(4, dtype=D), torch.tensor([0, 1, 3, 2])
    torch.testing.assert_close(student(x, s, t, label=label), teacher(x, s, label=label), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="cannot widen"):
        widen_to_two_times(student.state_dict(), student)
