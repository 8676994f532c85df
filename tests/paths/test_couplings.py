"""Couplings: exact OT equals brute force, labels stay with x1, Sinkhorn interpolates OT and independent."""

import itertools

import numpy as np
import pytest
import torch

from straightflow.paths.coupling import (
    CoupledBatch,
    get_coupling,
    independent_coupling,
    optimal_assignment,
    ot_coupling,
    sample_rows,
    sinkhorn_coupling,
    sinkhorn_plan,
    squared_distances,
)

F64 = torch.float64


def _pair_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return float(((x0 - x1) ** 2).flatten(1).sum(1).sum())


def _batch(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, d, generator=g, dtype=F64)
    x1 = torch.randn(b, d, generator=g, dtype=F64) + torch.tensor([3.0] + [0.0] * (d - 1), dtype=F64)
    label = torch.arange(b)
    return x0, x1, label


def _same_rows_as_multiset(a: torch.Tensor, b: torch.Tensor) -> bool:
    key = lambda x: sorted(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    return key(a) == key(b)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ot_cost_equals_brute_force_minimum_over_all_permutations(d, seed):
    x0, x1, _ = _batch(6, d, seed)
    best = min(_pair_cost(x0[list(p)], x1) for p in itertools.permutations(range(6)))
    out = ot_coupling(x0, x1)
    assert _pair_cost(out.x0, out.x1) == pytest.approx(best, rel=1e-12)
    assert _same_rows_as_multiset(out.x0, x0)  # a permutation of the source batch, nothing duplicated


@pytest.mark.parametrize("name", ["independent", "ot", "sinkhorn"])
def test_x1_and_labels_are_untouched_so_labels_travel_with_x1(name):
    x0, x1, label = _batch(16, 2, 3)
    out = get_coupling(name)(x0, x1, label, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, CoupledBatch)
    assert torch.equal(out.x1, x1) and torch.equal(out.label, label)
    assert out.x0.shape == x0.shape


@pytest.mark.parametrize("seed", range(5))
def test_ot_never_costs_more_than_independent(seed):
    x0, x1, label = _batch(32, 4, seed)
    ind, ot = independent_coupling(x0, x1, label), ot_coupling(x0, x1, label)
    assert _pair_cost(ot.x0, ot.x1) <= _pair_cost(ind.x0, ind.x1) + 1e-9


def test_ot_on_image_shaped_batches_reduces_cost():
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(2, 16, 3, 4, 4, generator=g)
    out = ot_coupling(x0, x1, None)
    assert out.label is None and out.x0.shape == x0.shape
    assert _pair_cost(out.x0, x1) < _pair_cost(x0, x1)


def test_squared_distances_match_direct_differences():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 7, 3, 2, generator=g, dtype=F64)
    direct = ((a[:, None] - b[None]) ** 2).flatten(2).sum(-1)
    torch.testing.assert_close(squared_distances(a, b), direct)


def test_sinkhorn_plan_has_uniform_marginals():
    x0, x1, _ = _batch(20, 2, 6)
    cost = squared_distances(x1, x0)
    plan = sinkhorn_plan(cost / cost.mean(), epsilon=0.05, tol=1e-9)
    uniform = torch.full((20,), 1 / 20, dtype=F64)
    torch.testing.assert_close(plan.sum(1), uniform, rtol=0, atol=1e-9)
    torch.testing.assert_close(plan.sum(0), uniform, rtol=0, atol=1e-9)


def test_sinkhorn_with_small_epsilon_approaches_ot_cost():
    # The plan's expected pairing cost B <pi, C> decreases to the OT cost as epsilon -> 0 (it is >= OT
    # because B pi is doubly stochastic, a mixture of permutations).
    x0, x1, _ = _batch(64, 2, 7)
    ot_cost, ind_cost = _pair_cost(ot_coupling(x0, x1).x0, x1), _pair_cost(x0, x1)
    cost = squared_distances(x1, x0)
    expected = {}
    for eps in (0.5, 0.05, 0.002):
        expected[eps] = 64 * float((sinkhorn_plan(cost / cost.mean(), eps) * cost).sum())
    assert ot_cost - 1e-6 <= expected[0.002] <= expected[0.05] <= expected[0.5] < ind_cost
    assert expected[0.002] == pytest.approx(ot_cost, rel=0.01)
    # Pairs sampled from the plan (with replacement) cost about the same.
    out = sinkhorn_coupling(x0, x1, epsilon=0.002, generator=torch.Generator().manual_seed(8))
    assert _pair_cost(out.x0, x1) == pytest.approx(ot_cost, rel=0.03)


def test_sinkhorn_with_huge_epsilon_is_nearly_independent():
    # epsilon -> inf: the plan tends to the product of marginals 1/B^2.
    x0, x1, _ = _batch(10, 2, 9)
    cost = squared_distances(x1, x0)
    plan = sinkhorn_plan(cost / cost.mean(), epsilon=1e4)
    torch.testing.assert_close(plan, torch.full((10, 10), 0.01, dtype=F64), rtol=1e-3, atol=0)


def test_sinkhorn_sampling_is_reproducible_with_generator():
    x0, x1, _ = _batch(32, 2, 10)
    a = sinkhorn_coupling(x0, x1, generator=torch.Generator().manual_seed(11))
    b = sinkhorn_coupling(x0, x1, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a.x0, b.x0)


def test_sample_rows_draws_each_column_with_its_row_probability_and_never_a_zero_weight_one():
    probs = torch.tensor([[0.0, 0.1, 0.0, 0.6, 0.3, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0, 0.5]], dtype=F64)
    n = 40000
    weights = probs.repeat_interleave(n, 0) * 7.0  # unnormalised rows: the sampler normalises
    idx = sample_rows(weights, torch.Generator().manual_seed(0)).view(2, n)
    for row in range(2):
        freq = torch.bincount(idx[row], minlength=6).to(F64) / n
        assert torch.all(freq[probs[row] == 0] == 0)
        sigma = (probs[row] * (1 - probs[row]) / n).sqrt()
        assert torch.all((freq - probs[row]).abs() <= 5 * sigma + 1e-12), (freq, probs[row])


def test_get_coupling_binds_kwargs_and_rejects_unknown_names():
    x0, x1, _ = _batch(8, 2, 12)
    fn = get_coupling("sinkhorn", epsilon=0.01)
    assert fn(x0, x1, generator=torch.Generator().manual_seed(0)).x0.shape == x0.shape
    with pytest.raises(ValueError, match="'independent', 'ot', 'sinkhorn'"):
        get_coupling("emd")


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same shape"):
        ot_coupling(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="label"):
        ot_coupling(torch.zeros(4, 2), torch.zeros(4, 2), torch.arange(3))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_coupling(torch.zeros(4, 2), torch.zeros(4, 2), epsilon=0.0)


def test_sinkhorn_scaling_and_log_domain_iterations_give_pots_plan():
    import numpy as np
    import ot

    from straightflow.paths.coupling import _sinkhorn_log, _sinkhorn_scaling

    g = torch.Generator().manual_seed(9)
    cost = squared_distances(torch.randn(48, 3, generator=g), torch.randn(48, 3, generator=g))
    cost = cost / cost.mean()
    scaled, logged = _sinkhorn_scaling(cost, 0.05, 5000, 1e-10), _sinkhorn_log(cost, 0.05, 5000, 1e-10)
    torch.testing.assert_close(scaled, logged, rtol=1e-6, atol=1e-10)
    uniform = np.full(48, 1 / 48)
    reference = ot.sinkhorn(uniform, uniform, cost.numpy(), 0.05, method="sinkhorn_log", stopThr=1e-12)
    torch.testing.assert_close(scaled, torch.from_numpy(reference), rtol=1e-5, atol=1e-9)


def test_ot_within_classes_keeps_each_class_noise_an_unbiased_draw():
    """Label-blind minibatch OT hands class k the noise nearest its data, so x0 | class is no longer N(0, I);
    solved within classes, each class's x0 rows are the ones at its own positions (a law-preserving shuffle)."""
    from straightflow.paths.coupling import get_coupling

    g = torch.Generator().manual_seed(0)
    b = 512
    label = torch.randint(0, 2, (b,), generator=g)
    x1 = torch.where(label[:, None] == 1, 4.0, -4.0) + 0.1 * torch.randn(b, 2, generator=g)
    x0 = torch.randn(b, 2, generator=g)
    blind = ot_coupling(x0, x1, label)
    assert blind.x0[label == 1].mean() > 0.4  # the bias the per-class solve removes
    fair = get_coupling("ot")(x0, x1, label)
    for k in (0, 1):
        rows = label == k
        assert torch.equal(fair.x0[rows].sort(0).values, x0[rows].sort(0).values)  # a permutation of its rows
    assert fair.x0[label == 1].mean().abs() < 0.2
    with pytest.raises(ValueError, match="tensor condition"):
        get_coupling("sinkhorn")(x0, x1, torch.randn(b, 3))


@pytest.mark.parametrize("d, seed", [(2, 0), (16, 1), (64, 2)])
def test_network_simplex_assignment_is_a_permutation_as_cheap_as_the_hungarian_one(d, seed):
    from scipy.optimize import linear_sum_assignment

    x0, x1, _ = _batch(256, d, seed)
    cost = squared_distances(x1, x0).numpy()
    cols = optimal_assignment(cost)
    assert sorted(cols.tolist()) == list(range(256))
    rows, hungarian = linear_sum_assignment(cost)
    assert cost[rows, cols].sum() == pytest.approx(cost[rows, hungarian].sum(), rel=1e-12)


def test_assignment_with_tied_costs_still_returns_a_permutation():
    # Duplicated points make the optimum degenerate (many optimal plans, some of them split); the answer must
    # still be a permutation of the right cost.
    x = torch.tensor([[0.0, 0.0]] * 4 + [[1.0, 1.0]] * 4, dtype=F64)
    cost = squared_distances(x, x.flip(0)).numpy()
    cols = optimal_assignment(cost)
    assert sorted(cols.tolist()) == list(range(8))
    assert cost[range(8), cols].sum() == pytest.approx(0.0, abs=1e-12)


def test_assignment_falls_back_to_scipy_when_the_simplex_is_unavailable(monkeypatch):
    from straightflow.paths import coupling

    x0, x1, _ = _batch(12, 2, 5)
    cost = squared_distances(x1, x0).numpy()
    monkeypatch.setattr(coupling, "_network_simplex", lambda: None)
    fallback = optimal_assignment(cost)
    monkeypatch.setattr(coupling, "_network_simplex", lambda: (lambda a, b, m, **kw: np.full_like(m, 1 / 144)))
    split = optimal_assignment(cost)  # a split (non-permutation) plan is refused, scipy answers
    assert sorted(fallback.tolist()) == list(range(12)) and np.array_equal(split, fallback)
    monkeypatch.undo()
    assert cost[range(12), fallback].sum() == pytest.approx(cost[range(12), optimal_assignment(cost)].sum())


@pytest.mark.parametrize("b, block, sizes", [(12, 4, [4, 4, 4]), (14, 4, [4, 4, 6]), (7, 3, [3, 4])])
def test_block_ot_is_brute_force_optimal_within_each_block_and_never_crosses_one(b, block, sizes):
    x0, x1, _ = _batch(b, 2, b + block)
    out = ot_coupling(x0, x1, block_size=block)
    start = 0
    for size in sizes:  # the last block takes the remainder instead of being a short one
        rows = slice(start, start + size)
        assert _same_rows_as_multiset(out.x0[rows], x0[rows])  # x0 re-paired only inside its block
        best = min(_pair_cost(x0[rows][list(p)], x1[rows]) for p in itertools.permutations(range(size)))
        assert _pair_cost(out.x0[rows], x1[rows]) == pytest.approx(best, rel=1e-12)
        start += size
    assert start == b


def test_block_ot_costs_more_than_whole_batch_ot_and_less_than_independent():
    x0, x1, _ = _batch(64, 2, 11)
    whole, blocks = _pair_cost(ot_coupling(x0, x1).x0, x1), _pair_cost(ot_coupling(x0, x1, block_size=16).x0, x1)
    assert whole < blocks < _pair_cost(x0, x1)


@pytest.mark.parametrize("block", [0, 64, 1000])
def test_block_ot_with_no_block_or_one_at_least_the_batch_is_whole_batch_ot(block):
    x0, x1, _ = _batch(64, 3, 5)
    assert torch.equal(ot_coupling(x0, x1, block_size=block).x0, ot_coupling(x0, x1).x0)


def test_block_ot_refuses_a_negative_block_size():
    x0, x1, _ = _batch(8, 2, 0)
    with pytest.raises(ValueError, match="block_size must be >= 0.*got -1"):
        ot_coupling(x0, x1, block_size=-1)
