"""The W2 noise floor: the mean over fresh second draws where the data allow them, one disjoint half otherwise."""

import torch

from straightflow.data.source import ToySource
from straightflow.data.tensors import TensorSource
from straightflow.evaluation import noise_floor
from straightflow.metrics.distances import wasserstein2


def test_floor_of_fresh_data_is_the_mean_over_independent_second_draws():
    data = ToySource("grid25")
    reference = data.heldout_pair(300, seed=1)[0]
    seconds = [data.heldout_pair(300, seed=1)[1]] + [data.heldout_pair(300, seed=1 + 7919 * k)[1] for k in (1, 2, 3)]
    by_hand = [wasserstein2(x, reference) for x in seconds]
    assert len({round(w, 9) for w in by_hand}) == 4  # four different draws, none of them the reference
    assert all(not torch.equal(x, reference) for x in seconds)
    assert abs(noise_floor(data, 300, seed=1) - sum(by_hand) / 4) < 1e-12
    assert abs(noise_floor(data, 300, seed=1, draws=1) - by_hand[0]) < 1e-12


def test_floor_of_a_data_file_uses_its_one_disjoint_second_half():
    x = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0))
    data = TensorSource(x, name="rows")
    reference, second = data.heldout_pair(80, seed=1)
    assert noise_floor(data, 80, seed=1) == wasserstein2(second, reference)
