"""Precision and recall of point clouds: their limits, and a collapse onto the data's ridges is caught."""

import pytest
import torch

from straightflow.metrics.coverage import precision_recall
from straightflow.metrics.distances import wasserstein2


def test_precision_recall_limits():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 8, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = torch.randn(200, 8, generator=g) + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # fakes collapsed onto one real mode: precise, but they recall little of the real set
    collapsed = real[:1] + 1e-3 * torch.randn(200, 8, generator=g)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.1
    with pytest.raises(ValueError, match="k must lie"):
        precision_recall(real[:3], far[:3], k=3)


def test_samples_collapsed_onto_a_ridge_lose_recall_where_w2_cannot_tell():
    # Data: a thin ring plus a wide halo (20% of the mass). Samples: the ring alone, fresh points.
    g = torch.Generator().manual_seed(1)

    def ring(n):
        angle = 2 * torch.pi * torch.rand(n, generator=g)
        return torch.stack([angle.cos(), angle.sin()], 1) * (1 + 0.01 * torch.randn(n, 1, generator=g))

    def data(n):
        halo = 3.0 * torch.randn(n // 5, 2, generator=g)
        return torch.cat([ring(n - n // 5), halo])

    reference, fresh, collapsed = data(1000), data(1000), ring(1000)
    floor_precision, floor_recall = precision_recall(reference, fresh)
    precision, recall = precision_recall(reference, collapsed)
    assert floor_recall > 0.9 and recall < floor_recall - 0.1
    assert precision >= floor_precision - 0.05
    assert wasserstein2(collapsed, reference) < 4 * wasserstein2(fresh, reference)  # W2 alone is not alarmed
