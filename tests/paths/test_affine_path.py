"""AffinePath: the conditional velocity is d x_t / dt, conversions invert each other, endpoints."""

import pytest
import torch

from straightflow.paths.affine import AffinePath
from straightflow.paths.schedule import CondOTScheduler, CosineScheduler, LinearScheduler, VPScheduler

PATHS = {
    "linear": AffinePath(LinearScheduler()),
    "condot": AffinePath(CondOTScheduler(sigma_min=1e-3)),
    "vp": AffinePath(VPScheduler()),
    "cosine": AffinePath(CosineScheduler()),
}


def _batch(shape=(16, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(*shape, generator=g, dtype=torch.float64)
    x1 = 2.0 + torch.randn(*shape, generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(shape[0], generator=g, dtype=torch.float64)
    return x0, x1, t


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("shape", [(16, 3), (4, 2, 3, 3)])
def test_conditional_velocity_is_time_derivative_of_x_t(name, shape):
    path, (x0, x1, t), h = PATHS[name], _batch(shape), 1e-6
    fd = (path.sample(x0, x1, t + h).x_t - path.sample(x0, x1, t - h).x_t) / (2 * h)
    torch.testing.assert_close(path.sample(x0, x1, t).dx_t, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", PATHS)
def test_each_row_uses_its_own_time(name):
    path, (x0, x1, t) = PATHS[name], _batch((5, 2, 2))
    batched = path.sample(x0, x1, t)
    for i in range(5):
        row = path.sample(x0[i : i + 1], x1[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(batched.x_t[i : i + 1], row.x_t)
        torch.testing.assert_close(batched.dx_t[i : i + 1], row.dx_t)


@pytest.mark.parametrize("name", PATHS)
def test_conversions_recover_the_true_endpoints_from_the_true_velocity(name):
    # x_t = a x1 + s x0 and v = a' x1 + s' x0 determine x0 and x1 uniquely.
    path, (x0, x1, t) = PATHS[name], _batch()
    ps = path.sample(x0, x1, t)
    torch.testing.assert_close(path.velocity_to_x1(ps.dx_t, ps.x_t, t), x1, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(path.velocity_to_x0(ps.dx_t, ps.x_t, t), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(path.x1_to_velocity(x1, ps.x_t, t), ps.dx_t, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(path.x0_to_velocity(x0, ps.x_t, t), ps.dx_t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", PATHS)
def test_conversions_round_trip_for_arbitrary_predictions(name):
    # A prediction that is not consistent with any (x0, x1) pair must still survive v -> x1 -> v etc.
    path, (_, _, t) = PATHS[name], _batch()
    g = torch.Generator().manual_seed(1)
    x_t, pred = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    kw = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(path.x1_to_velocity(path.velocity_to_x1(pred, x_t, t), x_t, t), pred, **kw)
    torch.testing.assert_close(path.x0_to_velocity(path.velocity_to_x0(pred, x_t, t), x_t, t), pred, **kw)
    torch.testing.assert_close(path.velocity_to_x1(path.x1_to_velocity(pred, x_t, t), x_t, t), pred, **kw)
    torch.testing.assert_close(path.velocity_to_x0(path.x0_to_velocity(pred, x_t, t), x_t, t), pred, **kw)


@pytest.mark.parametrize("name", PATHS)
def test_x0_and_x1_predictions_agree_through_x_t(name):
    # From one velocity, the implied x1 and x0 must reconstruct x_t = a x1 + s x0.
    path, (_, _, t) = PATHS[name], _batch()
    g = torch.Generator().manual_seed(2)
    x_t, v = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    x1_hat, x0_hat = path.velocity_to_x1(v, x_t, t), path.velocity_to_x0(v, x_t, t)
    out = path.scheduler(t)
    recon = out.alpha[:, None] * x1_hat + out.sigma[:, None] * x0_hat
    torch.testing.assert_close(recon, x_t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "tol0", "tol1"),
    # exact for linear/cosine; condot ends at x1 + sigma_min x0; VP starts at alpha_0 x1 + sigma_0 x0 with
    # alpha_0 = exp(-5.025) ~ 6.6e-3, so |x_0 - x0| <= 6.6e-3 |x1| + ~2e-5 |x0|.
    [("linear", 1e-12, 1e-12), ("cosine", 1e-12, 1e-12), ("condot", 1e-12, 1e-2), ("vp", 5e-2, 1e-12)],
)
def test_path_endpoints(name, tol0, tol1):
    path, (x0, x1, _) = PATHS[name], _batch()
    zeros, ones = torch.zeros(16, dtype=torch.float64), torch.ones(16, dtype=torch.float64)
    torch.testing.assert_close(path.sample(x0, x1, zeros).x_t, x0, rtol=0, atol=tol0)
    torch.testing.assert_close(path.sample(x0, x1, ones).x_t, x1, rtol=0, atol=tol1)


def test_condot_endpoint_is_offset_by_sigma_min_times_noise():
    path, (x0, x1, _) = AffinePath(CondOTScheduler(sigma_min=0.01)), _batch()
    x_1 = path.sample(x0, x1, torch.ones(16, dtype=torch.float64)).x_t
    torch.testing.assert_close(x_1, x1 + 0.01 * x0)


def test_linear_velocity_is_x1_minus_x0():
    path, (x0, x1, t) = PATHS["linear"], _batch()
    torch.testing.assert_close(path.sample(x0, x1, t).dx_t, x1 - x0)


def test_endpoint_conversions_are_finite():
    # x0 -> v divides by alpha_t (0 at t = 0); the guard keeps the result finite.
    path = PATHS["linear"]
    x = torch.randn(4, 2, dtype=torch.float64)
    v = path.x0_to_velocity(x, x, torch.zeros(4, dtype=torch.float64))
    assert bool(torch.isfinite(v).all())


def test_shape_errors():
    path = PATHS["linear"]
    with pytest.raises(ValueError, match="same shape"):
        path.sample(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        path.sample(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3))
