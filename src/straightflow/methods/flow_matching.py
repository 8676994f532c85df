"""Conditional flow matching (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024).

For a coupling (x0, x1) ~ pi and a time t ~ p(t), the conditional path x_t = alpha_t x1 + sigma_t x0 has the
velocity dx_t = alpha'_t x1 + sigma'_t x0. Regressing on it,

    L(theta) = E_{t, (x0, x1)} | v_theta(x_t, t) - dx_t |^2,

has the same gradient as regressing on the marginal field v(x, t) = E[dx_t | x_t = x] (Lipman et al.,
Theorem 2), whose ODE carries the source p0 (t = 0) to the data p1 (t = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from straightflow.conditions import Condition
from straightflow.methods.guidance import drop_labels
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import CoupledBatch

__all__ = ["LossOutput", "flow_matching_loss", "FlowMatching"]


@dataclass
class LossOutput:
    """loss: (B,) per-example values the trainer reduces; logs: extra (B,) or scalar tensors to record."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


def flow_matching_loss(
    model: nn.Module, path: AffinePath, x0: Tensor, x1: Tensor, t: Tensor, label: Tensor | None = None
) -> Tensor:
    """Per-example CFM loss mean_d (v_theta(x_t, t) - dx_t)^2. x0, x1: (B, *D); t: (B,) -> (B,)."""
    sample = path.sample(x0, x1, t)
    v = model(sample.x_t, t, label=label)
    return (v - sample.dx_t).square().flatten(1).mean(1)


@dataclass(frozen=True)
class FlowMatching:
    """The flow-matching objective with its time sampler and (optional) label dropout."""

    path: AffinePath
    time_sampler: object  # methods.time_sampling sampler: .sample(n, generator, device) -> (n,)
    num_classes: int | Condition = 0  # K class labels, or a methods.guidance Condition
    label_dropout: float = 0.0

    def loss(self, model: nn.Module, batch: CoupledBatch, generator: torch.Generator | None) -> LossOutput:
        t = self.time_sampler.sample(batch.x1.shape[0], generator, device=batch.x1.device)
        label = batch.label
        if label is not None and self.label_dropout > 0:
            label = drop_labels(label, self.label_dropout, self.num_classes, generator)
        return LossOutput(flow_matching_loss(model, self.path, batch.x0, batch.x1, t, label))
