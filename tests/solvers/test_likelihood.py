"""CNF log-likelihood: exact densities of analytic flows, round trips, Hutchinson, bits/dim, continuity check,
maximum-likelihood gradients, run-level sampling with log p and the `likelihood` command."""

import json
import math

import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.density import bits_per_dim, dequantize, jumps_with_log_prob, run_log_likelihood
from straightflow.models.mlp import MLP
from straightflow.paths.continuity import continuity_residual
from straightflow.paths.gaussian import GaussianMixture
from straightflow.runs import Run, sample_run
from straightflow.solvers.likelihood import (
    LikelihoodOptions,
    log_likelihood,
    sample_with_log_prob,
    standard_normal_log_prob,
)
from straightflow.training.config import RunConfig, apply_overrides

F64 = torch.float64
TIGHT = {"solver": "dopri5", "rtol": 1e-9, "atol": 1e-9}


def _gaussian() -> GaussianMixture:
    """One component: the flow from N(0, I) to N(m, s^2 I) is affine, x_t = t m + sqrt((1-t)^2 + t^2 s^2) x0."""
    return GaussianMixture(torch.ones(1, dtype=F64), torch.tensor([[1.5, -0.5]], dtype=F64),
                           torch.tensor([0.4], dtype=F64))


def _mixture(dim: int = 2) -> GaussianMixture:
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.5, -2.0]], dtype=F64)
    if dim > 2:
        means = torch.cat([means, torch.linspace(-1, 1, 3 * (dim - 2), dtype=F64).view(3, dim - 2)], dim=1)
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=F64), means, torch.tensor([0.3, 0.5, 0.8], dtype=F64))


@pytest.mark.parametrize("oracle", [_gaussian, _mixture, lambda: _mixture(3)], ids=["gaussian", "mixture", "mixture3d"])
def test_exact_divergence_likelihood_equals_the_true_density(oracle):
    gm = oracle()
    x1 = gm.sample(32, torch.Generator().manual_seed(0))
    res = log_likelihood(gm.marginal_velocity, x1, estimator="exact", **TIGHT)
    torch.testing.assert_close(res.log_prob, gm.log_prob(x1), rtol=0, atol=1e-4)
    torch.testing.assert_close(res.source_log_prob - res.divergence_integral, res.log_prob)
    assert res.estimator == "exact" and res.probes == 0 and res.nfe > 0


def test_gaussian_to_gaussian_reaches_the_affine_preimage():
    gm = _gaussian()
    x1 = gm.sample(16, torch.Generator().manual_seed(1))
    res = log_likelihood(gm.marginal_velocity, x1, **TIGHT)
    torch.testing.assert_close(res.x0, (x1 - gm.means[0]) / gm.stds[0], rtol=0, atol=1e-6)  # x1 = m + s x0


def test_fixed_step_rk4_agrees_with_the_true_density():
    gm = _mixture()
    x1 = gm.sample(16, torch.Generator().manual_seed(2))
    res = log_likelihood(gm.marginal_velocity, x1, solver="rk4", steps=200)
    torch.testing.assert_close(res.log_prob, gm.log_prob(x1), rtol=0, atol=1e-4)
    assert res.nfe == 800


def test_forward_and_backward_round_trip():
    gm = _mixture()
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    fwd = sample_with_log_prob(gm.marginal_velocity, x0, **TIGHT)
    torch.testing.assert_close(fwd.log_prob, gm.log_prob(fwd.x), rtol=0, atol=1e-4)
    back = log_likelihood(gm.marginal_velocity, fwd.x, **TIGHT)
    torch.testing.assert_close(back.x0, x0, rtol=0, atol=1e-4)
    torch.testing.assert_close(back.log_prob, fwd.log_prob, rtol=0, atol=1e-4)
    torch.testing.assert_close(fwd.source_log_prob, standard_normal_log_prob(x0))


def test_image_shaped_points_are_flattened_and_restored():
    # v = a x on (B, 1, 2, 2): x1 = e^a x0, so log p1(x1) = log N(e^-a x1) - D a.
    a = 0.3
    x1 = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    res = log_likelihood(lambda x, t: a * x, x1, solver="rk4", steps=50)
    assert res.x0.shape == x1.shape
    torch.testing.assert_close(res.x0, x1 * math.exp(-a), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(res.log_prob, standard_normal_log_prob(x1 * math.exp(-a)) - 4 * a)


def test_hutchinson_likelihood_is_unbiased_around_the_exact_one():
    # The x-trajectory does not depend on the probes, so log p is linear in the estimate: unbiased.
    gm = _mixture(3)
    x1 = gm.sample(4, torch.Generator().manual_seed(5)).repeat(200, 1)  # 200 independent probes per point
    kw = {"solver": "rk4", "steps": 16}
    exact = log_likelihood(gm.marginal_velocity, x1[:4], **kw).log_prob
    est = log_likelihood(gm.marginal_velocity, x1, estimator="hutchinson", probes_k=1,
                         generator=torch.Generator().manual_seed(0), **kw)
    per_point = est.log_prob.view(200, 4)
    stderr = per_point.std(0) / math.sqrt(200)
    assert est.estimator == "hutchinson" and est.probes == 1
    assert bool(((per_point.mean(0) - exact).abs() < 3 * stderr + 1e-9).all())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"estimator": "svd"}, "unknown divergence estimator 'svd'"),
    ({"probes_k": 0}, "number of probes must be an int >= 1, got 0"),
    ({"rtol": 0.0}, "rtol must be > 0, got 0.0"),
    ({"atol": -1.0}, "atol must be > 0, got -1.0"),
    ({"solver": "rk45"}, "unknown solver 'rk45'"),
    ({"estimator": "hutchinson", "probe_kind": "sobol"}, "unknown probe kind 'sobol'"),
])
def test_bad_arguments_are_one_line_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        log_likelihood(lambda x, t: x, torch.zeros(2, 2), **kwargs)


def test_an_options_object_and_keywords_are_one_way_in_and_keywords_override_it():
    x1 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    options = LikelihoodOptions(solver="rk4", steps=20)
    by_object = log_likelihood(lambda x, t: 0.5 * x, x1, options=options)
    by_keywords = log_likelihood(lambda x, t: 0.5 * x, x1, solver="rk4", steps=20)
    assert torch.equal(by_object.log_prob, by_keywords.log_prob) and by_object.nfe == 80
    assert log_likelihood(lambda x, t: 0.5 * x, x1, options=options, steps=40).nfe == 160
    with pytest.raises(ValueError, match=r"unknown likelihood options \['stepz'\]"):
        log_likelihood(lambda x, t: x, x1, stepz=3)
    with pytest.raises(ValueError, match="unknown probe kind 'sobol'"):
        LikelihoodOptions(probe_kind="sobol")


def test_bits_per_dim_formula():
    # Uniform density on [-1, 1]^D: NLL = D log 2, and dequantised 8-bit data are then uniform on 256 levels.
    assert bits_per_dim(3 * math.log(2.0), 3) == pytest.approx(8.0)
    assert bits_per_dim(0.0, 10) == pytest.approx(7.0)  # + log2(256 / 2)
    assert bits_per_dim(4 * math.log(2.0), 4, data_range=1.0, levels=16) == pytest.approx(1.0 + 4.0)
    nll = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(bits_per_dim(nll, 2), nll / (2 * math.log(2.0)) + 7.0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        bits_per_dim(1.0, 0)


def test_dequantize_stays_in_its_level_cell():
    levels = 17
    k = torch.arange(levels, dtype=torch.float32).repeat(20)
    x = 2.0 * k / (levels - 1) - 1.0
    y = dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert bool((y >= -1).all()) and bool((y < 1).all())
    assert torch.equal(torch.floor((y + 1) * levels / 2), k)
    with pytest.raises(ValueError, match="dequantize expects data in"):
        dequantize(torch.tensor([2.0]))


@pytest.mark.parametrize("dt", [None, 1e-4])
def test_continuity_residual_vanishes_for_the_true_field_and_not_for_a_perturbed_one(dt):
    gm = _mixture()
    axis = torch.linspace(-3.0, 3.0, 15, dtype=F64)
    x = torch.cartesian_prod(axis, axis)
    for t_value in (0.2, 0.8):
        t = torch.full((x.shape[0],), t_value, dtype=F64)
        terms = continuity_residual(gm.marginal_log_prob, gm.marginal_velocity, x, t, dt=dt)
        scale = float(terms.dt_log_p.abs().max())
        assert float(terms.residual.abs().max()) < (1e-10 if dt is None else 1e-4) * scale
        assert float(terms.density_residual.abs().max()) < 1e-6
        perturbed = continuity_residual(gm.marginal_log_prob, lambda y, s: gm.marginal_velocity(y, s) + 0.2 * y.flip(1),
                                        x, t, dt=dt)
        assert float(perturbed.residual.abs().max()) > 0.05 * scale


def test_likelihood_gradients_flow_for_maximum_likelihood_training():
    torch.manual_seed(0)
    model = MLP(2, width=32, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gm = _mixture()
    g = torch.Generator().manual_seed(0)
    train, test = gm.sample(256, g).float(), gm.sample(256, g).float()

    def mean_log_p(x: torch.Tensor, create_graph: bool) -> torch.Tensor:
        res = log_likelihood(lambda y, t: model(y, t), x, solver="rk4", steps=4, create_graph=create_graph)
        return res.log_prob.mean()

    before = float(mean_log_p(test, False))
    for _ in range(8):
        loss = -mean_log_p(train, True)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
    assert float(mean_log_p(test, False)) > before + 0.1


def test_average_velocity_jumps_carry_the_exact_density():
    # The exact average velocity of the affine Gaussian flow: x_t = t m + sigma_t / sigma_s (x_s - s m).
    gm = _gaussian()
    m, s2 = gm.means[0], float(gm.stds[0]) ** 2

    def sigma(t: torch.Tensor) -> torch.Tensor:
        return ((1 - t) ** 2 + t**2 * s2).sqrt()[:, None]

    def u(x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xt = t[:, None] * m + sigma(t) / sigma(s) * (x - s[:, None] * m)
        return (xt - x) / (t - s)[:, None]

    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    for steps in (1, 3):
        sol = jumps_with_log_prob(u, x0, standard_normal_log_prob, steps=steps)
        torch.testing.assert_close(sol.x, m + gm.stds[0] * x0)
        torch.testing.assert_close(sol.log_prob, gm.log_prob(sol.x))
        assert sol.nfe == steps


def _tiny_run(method: str) -> Run:
    cfg = apply_overrides(RunConfig(), {"data.data": "8gaussians", "method.name": method, "model.arch": "mlp"})
    torch.manual_seed(0)
    model = MLP(2, width=16, depth=1, n_times=2 if method == "meanflow" else 1).eval().requires_grad_(False)
    return Run(path=None, config=cfg, model=model, step=0, dim=2, num_classes=0, device=torch.device("cpu"))


@pytest.mark.parametrize("method", ["fm", "meanflow"])
def test_sample_run_with_logp_matches_the_likelihood_of_its_samples(method):
    run = _tiny_run(method)
    sol = sample_run(run, 64, solver="dopri5", steps=2, seed=0, with_logp=True, rtol=1e-7, atol=1e-7)
    assert sol.log_prob.shape == (64,) and torch.isfinite(sol.log_prob).all()
    if method == "fm":  # the same CNF density, backward from the samples
        back = run_log_likelihood(run, sol.x, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(back.log_prob, sol.log_prob, rtol=0, atol=1e-3)
    plain = sample_run(run, 64, solver="dopri5", steps=2, seed=0, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(sol.x, plain.x, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="cannot be combined"):
        sample_run(run, 4, with_logp=True, mode_guidance=1.0)


def test_run_log_likelihood_rejects_data_of_the_wrong_dimension():
    with pytest.raises(ValueError, match=r"data of shape \(3, 5\) does not match the run's dimension 2"):
        run_log_likelihood(_tiny_run("fm"), torch.zeros(3, 5))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lik") / "run"
    assert main(["train", "--method", "fm", "--data", "8gaussians", "--out", str(out), "--steps", "20",
                 "--no-progress", "--no-plots", "--set", "model.arch=mlp", "--set", "model.width=16",
                 "--set", "model.depth=1", "--set", "train.batch_size=32"]) == 0
    return out


def test_likelihood_command_writes_nll_json(run_dir, tmp_path, capsys):
    out = tmp_path / "nll.json"
    assert main(["likelihood", str(run_dir), "--n", "64", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 64 and report["estimator"] == "exact" and report["nfe"] > 0
    assert math.isfinite(report["nll"]) and report["nll_stderr"] > 0 and math.isfinite(report["data_nll"])
    assert "bits_per_dim" not in report
    file = tmp_path / "pts.npy"
    np.save(file, np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32))
    assert main(["likelihood", str(run_dir), "--data", str(file), "--solver", "rk4", "--steps", "4",
                 "--estimator", "hutchinson", "--probes", "2", "--dequantize", "256", "--out", str(out)]) == 2
    assert "dequantize expects data in [-1.0, 1.0]" in capsys.readouterr().err
    np.save(file, np.random.default_rng(0).uniform(-1, 1, size=(10, 2)).astype(np.float32))
    assert main(["likelihood", str(run_dir), "--data", str(file), "--solver", "rk4", "--steps", "4",
                 "--estimator", "hutchinson", "--probes", "2", "--dequantize", "256", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 10 and report["nfe"] == 16 and report["probes"] == 2
    assert report["bits_per_dim"] == pytest.approx(bits_per_dim(report["nll"], 2))


def test_likelihood_command_errors_are_one_line(run_dir, tmp_path, capsys):
    file = tmp_path / "pts3.npy"
    np.save(file, np.zeros((4, 3), dtype=np.float32))
    assert main(["likelihood", str(run_dir), "--data", str(file)]) == 2
    assert "has points of shape (3,) but the run has dimension 2" in capsys.readouterr().err
    assert main(["likelihood", str(run_dir), "--probes", "0"]) == 2
    assert "--probes must be >= 1, got 0" in capsys.readouterr().err


def test_sample_command_with_logp_and_mode_guidance(run_dir, tmp_path):
    out = tmp_path / "s.npy"
    assert main(["sample", str(run_dir), "--n", "20", "--solver", "rk4", "--steps", "4", "--with-logp",
                 "--out", str(out)]) == 0
    assert np.load(out).shape == (20, 2) and np.load(tmp_path / "s_logp.npy").shape == (20,)
    assert main(["sample", str(run_dir), "--n", "20", "--solver", "euler", "--steps", "4", "--mode-guidance", "0.5",
                 "--probes", "2", "--out", str(out)]) == 0
    assert np.isfinite(np.load(out)).all()
