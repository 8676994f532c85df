"""Rectified flow (Liu, Gong & Liu, ICLR 2023): reflow and distillation on the couplings a flow makes.

Our convention is the paper's: X0 ~ pi_0 is the source (noise, or a data set for data-to-data transport) at
t = 0, X1 ~ pi_1 the data at t = 1, X_t = t X1 + (1 - t) X0, and a flow dZ_t = v(Z_t, t) dt runs from
Z_0 = X0 to Z_1.

- 1-RF is flow matching on independent pairs (X0, X1) ~ pi_0 x pi_1.
- Reflow: draw X0, solve the ODE of the k-RF to get Z1 = Flow_k(X0), and train the (k+1)-RF by flow
  matching on the fixed pairs (X0, Z1), starting from the k-RF's weights. The new coupling has no larger
  transport cost E c(Z1 - Z0) for every convex c (the paper's Theorem 3.5) and its flow is straighter; the
  straight segments X0 -> Z1 cross less and less (:func:`coupling_report`).
- Distillation to k steps: flow matching on the k-RF's pairs with t restricted to the Euler grid
  {0, 1/k, ..., (k-1)/k} (``method.time_sampler = "grid"``), so that k Euler steps carry X0 to Z1. For k = 1
  that is exactly the paper's min_v E |(Z1 - Z0) - v(Z0, 0)|^2.

This module holds the pure pieces: the metrics of a coupling and independent pairs to compare with. The
workflows (generate pairs from a run, train the next run on them, distil) are in
:mod:`straightflow.pipelines`: a reflowed or distilled run is an ordinary flow-matching run whose batches are
rows of the fixed pairs (``data.pairs``), started from its parent's weights (``train.init_from``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from straightflow.metrics.flows import crossing_rate, transport_cost

__all__ = ["CouplingReport", "coupling_report", "independent_coupling", "positive_int"]


def positive_int(value: Any, what: str) -> int:
    """value when it is an int >= 1, else a one-line ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    return value


# --------------------------------------------------------------------------------------- couplings
@dataclass(frozen=True)
class CouplingReport:
    """Metrics of a coupling (x0_i, x1_i): transport cost E |x1 - x0|^2 over all n pairs; for 2-D points
    the crossing rate, the share of pairs of straight segments x0_i -> x1_i that properly cross, over
    the first `crossing_points` pairs (all of their m (m - 1) / 2 pairs of segments); None otherwise."""

    n: int
    transport_cost: float
    crossing_rate: float | None
    crossing_points: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coupling_report(x0: Tensor, x1: Tensor, crossing_points: int = 2000) -> CouplingReport:
    """Transport cost and (2-D) crossing rate of the coupling x0 (n, *D) <-> x1 (n, *D), row by row."""
    cost = transport_cost(x0, x1)
    m = min(int(x0.shape[0]), positive_int(crossing_points, "crossing points"))
    flat = x0.dim() == 2 and x0.shape[1] == 2
    rate = crossing_rate(x0[:m], x1[:m]) if flat and m >= 2 else None
    return CouplingReport(int(x0.shape[0]), cost, rate, m if rate is not None else 0)


def independent_coupling(data: Any, source: Any, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(x0, x1) drawn independently (pi_0 x pi_1): x0 the n source points a run's sample_run(seed=seed)
    starts from, x1 n held-out data points (data.heldout(n, seed))."""
    n = positive_int(n, "number of pairs")
    return source.sample(n, torch.Generator().manual_seed(seed)), data.heldout(n, seed=seed)
