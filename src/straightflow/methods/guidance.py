"""Class conditioning: label dropout at training, classifier-free guidance at sampling.

Labels live in {0, ..., K-1}; the index K is the null label ("no class"), which the network learns when
labels are dropped with probability p_drop. Guided velocity (Ho & Salimans 2022, in velocity form):
    v_w(x, t | c) = v(x, t | null) + w (v(x, t | c) - v(x, t | null)),
so w = 1 is the plain conditional field and w = 0 the unconditional one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from straightflow.rng import rand

__all__ = ["drop_labels", "null_labels", "guided_velocity"]


def null_labels(batch: int, num_classes: int, device: torch.device | str = "cpu") -> Tensor:
    """(B,) tensor of the null label K."""
    return torch.full((batch,), num_classes, dtype=torch.long, device=device)


def drop_labels(label: Tensor, p_drop: float, num_classes: int, generator: torch.Generator | None) -> Tensor:
    """Replace each label by the null label K with probability p_drop. label: (B,) long.

    The coin flips are drawn on the generator's device (else on the labels') and applied on the labels'.
    """
    if not 0.0 <= p_drop <= 1.0:
        raise ValueError(f"label dropout must lie in [0, 1], got {p_drop}")
    drop = rand(label.shape, generator, label.device) < p_drop
    return torch.where(drop, torch.full_like(label, num_classes), label)


def guided_velocity(
    model: nn.Module, label: Tensor | None, guidance: float = 1.0, num_classes: int = 0
) -> Callable[[Tensor, Tensor], Tensor]:
    """v(x, t) for the solvers: conditional on `label` (B,), with classifier-free guidance weight `guidance`.

    With guidance != 1 the conditional and null branches run as one batched pass of 2B rows.
    """
    if label is None or guidance == 1.0:
        return lambda x, t: model(x, t, label=label)
    if num_classes < 1:
        raise ValueError(f"guidance weight {guidance} needs a conditional model; this one has no classes")
    null = null_labels(label.shape[0], num_classes, label.device)

    def field(x: Tensor, t: Tensor) -> Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), label=torch.cat([label, null]))
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    return field
