"""Conditions: class labels and tensor conditions, their null, dropping, guidance, and metadata round trips."""

import pytest
import torch

from straightflow.conditions import ClassLabels, TensorCondition, as_condition, condition_from_meta, null_like
from straightflow.methods.guidance import drop_labels, guided_velocity


def test_class_labels_null_is_index_k_and_is_detected():
    cond = ClassLabels(3)
    labels = torch.tensor([0, 3, 2, 3])
    assert torch.equal(cond.is_null(labels), torch.tensor([False, True, False, True]))
    assert torch.equal(cond.null(2), torch.tensor([3, 3]))


def test_learned_tensor_null_is_nan_rows_and_given_null_is_the_given_tensor():
    learned = TensorCondition((2, 3))
    null = learned.null(4)
    assert null.shape == (4, 2, 3) and torch.isnan(null).all()
    assert learned.is_null(null).all()
    real = torch.randn(4, 2, 3)
    assert not learned.is_null(real).any()
    given = TensorCondition((2,), torch.tensor([-1.0, -1.0]))
    rows = torch.tensor([[-1.0, -1.0], [0.5, -1.0]])
    assert torch.equal(given.is_null(rows), torch.tensor([True, False]))
    assert torch.equal(given.null(3), torch.full((3, 2), -1.0))


def test_dropping_tensor_conditions_replaces_whole_rows_with_the_null():
    c = torch.randn(1000, 4)
    dropped = drop_labels(c, 0.3, TensorCondition((4,)), torch.Generator().manual_seed(0))
    is_null = torch.isnan(dropped).all(1)
    partly = torch.isnan(dropped).any(1) & ~is_null
    assert not partly.any()  # a row is dropped entirely or kept entirely
    assert 0.25 < float(is_null.float().mean()) < 0.35
    assert torch.equal(dropped[~is_null], c[~is_null])


def test_guided_velocity_with_a_tensor_condition_mixes_the_null_branch():
    cond_spec = TensorCondition((1,))

    def model(x, t, label=None):  # v = c (0 for the null condition): guidance w gives w * c
        return torch.nan_to_num(label, nan=0.0).expand_as(x)

    c = torch.tensor([[2.0], [-1.0]])
    v = guided_velocity(model, c, 3.0, cond_spec)(torch.zeros(2, 2), torch.zeros(2))
    torch.testing.assert_close(v, torch.tensor([[6.0, 6.0], [-3.0, -3.0]]))


def test_conditions_round_trip_through_checkpoint_metadata():
    for cond in (ClassLabels(5), TensorCondition((3, 2)), TensorCondition((2,), torch.tensor([0.5, -2.0]))):
        back = condition_from_meta(cond.to_meta())
        assert type(back) is type(cond) and back == cond
        if isinstance(cond, TensorCondition) and cond.null_value is not None:
            assert torch.equal(back.null_value, cond.null_value)
    assert condition_from_meta(None, 4) == ClassLabels(4)  # runs saved before the entry existed
    assert condition_from_meta(None, 0) is None


def test_bad_condition_specs_are_one_line_errors():
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        ClassLabels(0)
    with pytest.raises(ValueError, match="condition shape"):
        TensorCondition(())
    with pytest.raises(ValueError, match="null condition must have the condition's shape"):
        TensorCondition((2,), torch.zeros(3))
    with pytest.raises(ValueError, match="number of classes"):
        as_condition(-1)
    with pytest.raises(ValueError, match="needs a conditional model"):
        null_like(0, torch.zeros(2))
    with pytest.raises(ValueError, match="conditions must have shape"):
        TensorCondition((2,)).check(torch.zeros(3, 4), 3)


def test_meanflow_folded_guidance_mixes_tensor_conditioned_rows_and_keeps_null_rows():
    from straightflow.methods.mean_flow import guided_velocity_target

    cond_spec = TensorCondition((1,))

    def u(x, s, t, label=None):  # u(x, s, s | c) = c (0 for the null condition)
        return torch.nan_to_num(label, nan=0.0).expand_as(x)

    x, s = torch.zeros(3, 2), torch.full((3,), 0.3)
    v = torch.ones(3, 2)
    c = torch.tensor([[2.0], [float("nan")], [-1.0]])  # the middle row's condition was dropped
    out = guided_velocity_target(u, x, s, v, c, cond_spec, omega=1.5, kappa=0.2)
    # omega v + kappa c + (1 - omega - kappa) * 0 on conditioned rows; v on the dropped one
    expected = torch.tensor([[1.5 + 0.4] * 2, [1.0] * 2, [1.5 - 0.2] * 2])
    torch.testing.assert_close(out, expected)
