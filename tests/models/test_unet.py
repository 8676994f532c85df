"""The U-Net: image in, image out; time(s) and label change it; forward-mode JVP through it is right."""

import pytest
import torch
from _image_models import (
    check_inputs_change_output,
    check_jvp_modes_match_finite_difference,
    check_tangent_pass_keeps_the_primal_gradient,
    perturb,
)

from straightflow.methods.mean_flow import average_velocity_jvp
from straightflow.models.unet import UNet, parse_int_tuple


def tiny(shape=(1, 8, 8), n_times=2, attn=(8,), **kw):
    model = UNet(shape, channels=8, channel_mult=(1, 2), attn_resolutions=attn, n_times=n_times, num_classes=5,
                 heads=2, n_frequencies=4, **kw)
    return perturb(model.double())


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 12)])
@pytest.mark.parametrize("n_times", [1, 2])
def test_output_shape_and_every_input_matters(shape, n_times):
    check_inputs_change_output(tiny(shape, n_times), shape, n_times)


def test_fresh_unet_starts_at_zero_velocity():
    model = UNet((1, 8, 8), channels=8, channel_mult=(1, 2))
    assert model(torch.randn(2, 1, 8, 8), torch.rand(2)).abs().max() == 0


def test_jvp_through_unet_with_attention_equals_finite_difference():
    check_jvp_modes_match_finite_difference(tiny(attn=(8, 4)), (1, 8, 8))


def test_tangent_pass_gradient_equals_plain_forward_gradient():
    check_tangent_pass_keeps_the_primal_gradient(tiny(dropout=0.0), (1, 8, 8))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="not divisible by 2\\^2"):
        UNet((1, 6, 6), channels=8, channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="expects x of shape"):
        UNet((1, 8, 8), channels=8, channel_mult=(1, 2))(torch.randn(2, 1, 4, 4), torch.rand(2))
    assert parse_int_tuple("[1, 2,2]", "m") == (1, 2, 2) and parse_int_tuple("", "m") == ()
    with pytest.raises(ValueError, match="model.channel_mult takes"):
        parse_int_tuple("1,x", "model.channel_mult")


def test_jvp_modes_with_dropout_use_the_masks_of_the_forward():
    model = tiny(attn=(), dropout=0.3).train()
    x, v = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    s, t = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), torch.tensor([0.6, 0.7, 0.8], dtype=torch.float64)

    def seeded(x_, s_):
        torch.manual_seed(7)
        return model(x_, s_, t)

    eps = 1e-6
    with torch.no_grad():
        fd = (seeded(x + eps * v, s + eps) - seeded(x - eps * v, s - eps)) / (2 * eps)
    for mode in ("tangent", "func", "func_nograd"):
        torch.manual_seed(7)
        u, du = average_velocity_jvp(model, x, s, t, v, None, mode=mode)
        torch.testing.assert_close(u, seeded(x, s), rtol=0, atol=0, msg=mode)
        torch.testing.assert_close(du, fd, rtol=1e-6, atol=1e-6 * float(fd.abs().max()), msg=mode)
