"""The DiT: patchify round trip, image in and out; time(s) and label change it; JVP through it is right."""

import pytest
import torch
from _image_models import (
    check_inputs_change_output,
    check_jvp_modes_match_finite_difference,
    check_tangent_pass_keeps_the_primal_gradient,
    perturb,
)

from straightflow.models.dit import DiT


def tiny(shape=(1, 8, 8), n_times=2, **kw):
    model = DiT(shape, width=16, depth=2, heads=2, patch_size=2, n_times=n_times, num_classes=5, n_frequencies=4,
                **kw)
    return perturb(model.double())


def test_patchify_unpatchify_round_trip():
    model = DiT((3, 8, 12), width=16, depth=1, heads=2, patch_size=4)
    x = torch.randn(2, 3, 8, 12)
    assert model.patchify(x).shape == (2, 6, 48)
    torch.testing.assert_close(model.unpatchify(model.patchify(x)), x, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 6)])
@pytest.mark.parametrize("n_times", [1, 2])
def test_output_shape_and_every_input_matters(shape, n_times):
    check_inputs_change_output(tiny(shape, n_times), shape, n_times)


def test_jvp_through_dit_equals_finite_difference():
    check_jvp_modes_match_finite_difference(tiny(), (1, 8, 8))


def test_tangent_pass_gradient_equals_plain_forward_gradient():
    check_tangent_pass_keeps_the_primal_gradient(tiny(), (1, 8, 8))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="patch_size 3 must"):
        DiT((1, 8, 8), width=16, patch_size=3)
    with pytest.raises(ValueError, match="heads \\(3\\) must divide"):
        DiT((1, 8, 8), width=16, heads=3)
