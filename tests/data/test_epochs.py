"""Epoch order: each row exactly once per epoch, deterministic per step, disjoint across rank slices."""

import torch

from straightflow.data.epochs import epoch_indices
from straightflow.training.distributed import DistInfo, shard_range


def test_every_row_once_per_epoch_even_when_batches_straddle_epochs():
    n, batch = 10, 4  # 5 steps = 2 epochs exactly, with batches crossing the boundary
    seen = torch.cat([epoch_indices(k, batch, n, seed=3) for k in range(5)])
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])  # a new order each epoch


def test_indices_depend_only_on_seed_and_step():
    assert torch.equal(epoch_indices(7, 5, 23, seed=1), epoch_indices(7, 5, 23, seed=1))
    assert not torch.equal(epoch_indices(7, 5, 23, seed=1), epoch_indices(7, 5, 23, seed=2))


def test_rank_slices_of_an_epoch_are_disjoint_and_cover_it():
    n, batch, world = 12, 6, 2
    per_rank = {r: [] for r in range(world)}
    for k in range(2):
        idx = epoch_indices(k, batch, n)
        for r in range(world):
            a, b = shard_range(batch, DistInfo(r, world))
            per_rank[r] += idx[a:b].tolist()
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(n))


def test_a_batch_is_its_slice_of_the_concatenated_epoch_permutations():
    n, batch = 7, 3  # batches straddle epoch boundaries
    perms = torch.cat([epoch_indices(e, n, n, seed=5) for e in range(4)])  # batch = n: one whole epoch per step
    for k in range(9):
        assert torch.equal(epoch_indices(k, batch, n, seed=5), perms[k * batch:(k + 1) * batch]), k
    assert torch.equal(epoch_indices(0, 3 * n, n, seed=5), perms[:3 * n])  # one batch spanning three epochs
