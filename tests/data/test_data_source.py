"""Data sources: toy, file and Gaussian sources share one interface; held-out data stays held out."""

import math

import numpy as np
import pytest
import torch

from straightflow.data.files import save_vectors
from straightflow.data.source import (
    FileSource,
    GaussianSource,
    ToySource,
    resolve_data,
    resolve_source,
)
from straightflow.data.toy import toy_log_prob


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _indexed_rows(n: int = 25, d: int = 3) -> torch.Tensor:
    """Row i is (i, i, ..., i), so a drawn row tells its index."""
    return torch.arange(n, dtype=torch.float32)[:, None].expand(n, d).clone()


def test_toy_source_samples_two_dimensional_points_and_has_dim_2():
    source = resolve_data("moons")
    assert isinstance(source, ToySource) and source.dim == 2 and source.name == "moons"
    assert source.sample(50, _gen(0)).shape == (50, 2)


def test_toy_heldout_is_a_function_of_the_seed_and_differs_from_the_training_stream_of_that_seed():
    source = ToySource("checkerboard")
    assert torch.equal(source.heldout(100, seed=3), source.heldout(100, seed=3))
    assert not torch.equal(source.heldout(100, seed=3), source.heldout(100, seed=4))
    assert not torch.equal(source.heldout(100, seed=3), source.sample(100, _gen(3)))


def test_toy_log_prob_is_the_exact_density_where_known_and_not_implemented_elsewhere():
    x = torch.randn(10, 2, generator=_gen(1))
    source = ToySource("8gaussians")
    assert source.has_log_prob and torch.equal(source.log_prob(x), toy_log_prob("8gaussians", x))
    assert not ToySource("pinwheel").has_log_prob
    with pytest.raises(NotImplementedError, match="pinwheel"):
        ToySource("pinwheel").log_prob(x)


def test_file_source_holds_out_the_last_tenth_of_rows_rounded_up():
    source = FileSource(_indexed_rows(25))
    assert source.dim == 3
    assert torch.equal(source.heldout_rows[:, 0], torch.tensor([22.0, 23.0, 24.0]))  # ceil(2.5) = 3 rows


def test_file_source_sample_never_returns_a_heldout_row_and_covers_training_rows_uniformly():
    source = FileSource(_indexed_rows(25))
    index = source.sample(22000, _gen(2))[:, 0].long()
    assert index.max().item() <= 21
    counts = torch.bincount(index, minlength=22).double()
    # each count is Binomial(22000, 1/22): mean 1000, std ~31
    assert (counts - 1000).abs().max().item() < 5 * 31


def test_file_source_sample_is_reproducible_from_the_generator():
    source = FileSource(_indexed_rows(25))
    assert torch.equal(source.sample(40, _gen(5)), source.sample(40, _gen(5)))


def test_file_heldout_up_to_its_size_gives_distinct_heldout_rows_and_beyond_it_repeats_them():
    source = FileSource(_indexed_rows(25))
    all_held = source.heldout(3, seed=0)[:, 0]
    assert sorted(all_held.tolist()) == [22.0, 23.0, 24.0]
    many = source.heldout(50, seed=0)[:, 0]
    assert set(many.tolist()) <= {22.0, 23.0, 24.0} and len(many) == 50
    assert torch.equal(source.heldout(50, seed=1), source.heldout(50, seed=1))


def test_file_heldout_pair_is_two_disjoint_draws_and_refuses_more_than_half_the_heldout_rows():
    rows = torch.arange(200, dtype=torch.float32)[:, None].repeat(1, 3)
    src = FileSource(rows, name="pts")
    assert src.max_heldout_pair == 10
    reference, second = src.heldout_pair(10, seed=4)
    assert reference.shape == second.shape == (10, 3)
    assert set(reference[:, 0].tolist()).isdisjoint(second[:, 0].tolist())
    assert set(reference[:, 0].tolist()) | set(second[:, 0].tolist()) == set(range(180, 200))
    torch.testing.assert_close(src.heldout_pair(10, seed=4)[0], reference)
    with pytest.raises(ValueError, match="n=11 is more than half of the 20 held-out rows of 'pts'; use n <= 10"):
        src.heldout_pair(11)


def test_toy_heldout_pair_draws_two_fresh_independent_sets():
    reference, second = ToySource("moons").heldout_pair(50, seed=2)
    assert ToySource("moons").max_heldout_pair is None
    assert not torch.allclose(reference, second)


def test_file_source_needs_two_rows_and_has_no_density():
    with pytest.raises(ValueError, match="1 rows"):
        FileSource(_indexed_rows(1))
    with pytest.raises(NotImplementedError):
        FileSource(_indexed_rows(4)).log_prob(torch.zeros(2, 3))


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_resolve_data_reads_npy_and_csv_paths(tmp_path, suffix):
    path = save_vectors(tmp_path / f"rows{suffix}", _indexed_rows(30, 4))
    source = resolve_data(str(path))
    assert isinstance(source, FileSource) and source.dim == 4 and source.name == str(path)
    assert source.sample(5, _gen(0)).shape == (5, 4)


def test_resolve_data_rejects_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown data 'moon'"):
        resolve_data("moon")
    with pytest.raises(ValueError, match="not found"):
        resolve_data(str(tmp_path / "gone.csv"))


def test_gaussian_log_prob_is_the_standard_normal_density_summed_over_all_entries():
    source = GaussianSource((3, 4, 4))
    assert source.dim == 48
    x = torch.randn(5, 3, 4, 4, generator=_gen(3), dtype=torch.float64)
    expected = -0.5 * (x**2).sum(dim=(1, 2, 3)) - 24 * math.log(2 * math.pi)
    assert torch.allclose(source.log_prob(x), expected, rtol=0, atol=1e-12)
    assert source.log_prob(torch.zeros(1, 3, 4, 4)).item() == pytest.approx(-24 * math.log(2 * math.pi))


def test_gaussian_samples_have_zero_mean_and_unit_variance():
    x = GaussianSource(2).sample(40000, _gen(4)).double()
    assert x.mean(dim=0).abs().max().item() < 5 / math.sqrt(40000)
    assert (x.var(dim=0) - 1).abs().max().item() < 5 * math.sqrt(2 / 40000)


def test_gaussian_heldout_is_seeded_and_not_the_training_stream():
    source = GaussianSource(3)
    assert torch.equal(source.heldout(8, seed=0), source.heldout(8, seed=0))
    assert not torch.equal(source.heldout(8, seed=0), source.sample(8, _gen(0)))


def test_gaussian_rejects_bad_dimensions_and_points_of_the_wrong_shape():
    with pytest.raises(ValueError, match="0"):
        GaussianSource(0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        GaussianSource(2).log_prob(torch.zeros(4, 3))


def test_resolve_source_gives_a_gaussian_by_default_and_data_for_data_to_data_transport():
    assert isinstance(resolve_source("gaussian", 2), GaussianSource)
    assert resolve_source("gaussian", 5).dim == 5
    assert isinstance(resolve_source("circles", 2), ToySource)


def test_resolve_source_with_a_mismatched_dimension_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="dimension 2 but the data has dimension 3"):
        resolve_source("moons", 3)
    path = tmp_path / "x.npy"
    np.save(path, np.ones((10, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 4"):
        resolve_source(str(path), 2)


def test_sources_moved_to_a_device_draw_training_batches_there_and_keep_heldout_rows_on_the_cpu():
    from straightflow.data.images import resolve_images
    from straightflow.data.pairs import PairSource

    meta = torch.device("meta")  # stands in for an accelerator: a device without data
    digits = resolve_images("digits", conditional=True, dequantize=True).to(meta)
    x, label = digits.sample_labeled(5, _gen(0))
    assert x.device == label.device == meta and x.shape == (5, 1, 8, 8)
    assert digits.heldout(3).device.type == "cpu"  # metrics read held-out rows on the CPU
    rows = FileSource(_indexed_rows()).to(meta)
    assert rows.sample(4).device == meta and rows.rows(torch.arange(3, device=meta))[0].device == meta
    assert rows.heldout(2).device.type == "cpu"
    pairs = PairSource(torch.randn(6, 2), torch.randn(6, 2), torch.arange(6)).to(meta)
    batch = pairs.sample(4, _gen(0))
    assert batch.x0.device == batch.x1.device == batch.label.device == meta
    assert GaussianSource((1, 2, 2)).to(meta).sample(3, None).device.type == "cpu"  # follows its generator
    assert not ToySource("moons").draws_on_any_device and GaussianSource(2).draws_on_any_device
