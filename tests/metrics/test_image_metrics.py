"""Feature-FID's Frechet distance against closed forms, the cached feature network."""

import numpy as np
import pytest
import scipy.linalg
import torch

from straightflow.data.images import resolve_images
from straightflow.metrics import images as im


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).square().sum() + (var1.sqrt() - var2.sqrt()).square().sum())  # 1 + 6.25 + 4 + 1
    assert im.frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_the_matrix_square_root_formula_for_full_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    got = im.frechet_distance(torch.tensor(mu1), torch.tensor(c1), torch.tensor(mu2), torch.tensor(c2))
    assert got == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_set_against_itself_is_zero():
    feats = torch.randn(500, 16, dtype=torch.float64) @ torch.randn(16, 16, dtype=torch.float64)
    stats = im.feature_stats(feats)
    assert im.frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="shapes do not match"):
        im.frechet_distance(stats[0], stats[1], stats[0][:3], stats[1])


@pytest.fixture(scope="module")
def digits():
    return resolve_images("digits", conditional=True)


def test_feature_network_is_trained_once_then_loaded_from_the_cache(digits, tmp_path):
    net = im.feature_network(digits, cache=tmp_path, steps=20)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("featurenet-") and files[0].endswith(".json")
    again = im.feature_network(digits, cache=tmp_path, steps=20)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.test_accuracy == net.test_accuracy
    x = digits.heldout(64)
    assert im.feature_fid(x, x, net) == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= im.class_accuracy(x, torch.zeros(64, dtype=torch.long), net) <= 1.0
    assert im.extract(net, x)[0].shape == (64, im.FEATURE_DIM)


def test_cache_key_follows_the_data(digits):
    other = resolve_images("digits")
    assert im.data_hash(other) == im.data_hash(digits)  # conditioning does not change the pixels
    other.train = other.train.clone()
    other.train[0, 0, 0, 0] += 1
    assert im.data_hash(other) != im.data_hash(digits)


def test_cache_directory_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert im.cache_dir() == tmp_path / "straightflow"


def test_true_fid_without_its_packages_is_a_clear_error():
    pytest.importorskip("numpy")
    if any(__import__("importlib").util.find_spec(m) for m in ("torchmetrics", "cleanfid")):
        pytest.skip("a FID package is installed here")
    with pytest.raises(ValueError, match="use feature-FID"):
        im.true_fid(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
