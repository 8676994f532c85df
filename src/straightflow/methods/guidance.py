"""Conditioning at training and sampling: dropping conditions, classifier-free guidance.

What a condition is (class labels or tensors, and their null) lives in :mod:`straightflow.conditions`.
The network learns the null branch when conditions are dropped with probability p_drop. Guided velocity
(Ho & Salimans 2022, in velocity form):
    v_w(x, t | c) = v(x, t | null) + w (v(x, t | c) - v(x, t | null)),
so w = 1 is the plain conditional field and w = 0 the unconditional one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from straightflow.conditions import Condition, as_condition, null_like
from straightflow.rng import rand
from straightflow.types import broadcast_time

__all__ = ["drop_labels", "guided_velocity"]


def drop_labels(label: Tensor, p_drop: float, spec: int | Condition, generator: torch.Generator | None) -> Tensor:
    """Replace each row's condition by the null condition with probability p_drop. label: (B,) or (B, *C).

    spec: the number of classes K (null label K) or a Condition. The coin flips are drawn on the generator's
    device (else on the labels') and applied on the labels'.
    """
    if not 0.0 <= p_drop <= 1.0:
        raise ValueError(f"label dropout must lie in [0, 1], got {p_drop}")
    drop = rand(label.shape[:1], generator, label.device) < p_drop
    return torch.where(broadcast_time(drop, label), null_like(spec, label), label)


def guided_velocity(
    model: nn.Module, label: Tensor | None, guidance: float = 1.0, spec: int | Condition | None = 0
) -> Callable[[Tensor, Tensor], Tensor]:
    """v(x, t) for the solvers: conditional on `label` (B, ...), with classifier-free guidance weight `guidance`.

    spec: the number of classes or the Condition (it names the null branch). With guidance != 1 the
    conditional and null branches run as one batched pass of 2B rows.
    """
    if label is None or guidance == 1.0:
        return lambda x, t: model(x, t, label=label)
    condition = as_condition(spec)
    if condition is None:
        raise ValueError(f"guidance weight {guidance} needs a conditional model; this one has no conditions")
    null = null_like(condition, label)

    def field_(x: Tensor, t: Tensor) -> Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), label=torch.cat([label, null]))
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    return field_
