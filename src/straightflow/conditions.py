"""Conditions: what a network is conditioned on besides x and time, and its null ("no condition").

A condition c travels beside x1 through the batch (``CoupledBatch.label``) and reaches the network as its
``label=`` argument. Two kinds, one interface (``null``, ``is_null``, ``check``, ``to_meta``):

- :class:`ClassLabels`: c in {0, ..., K-1}, (B,) long; the index K is the null label ("no class");
- :class:`TensorCondition`: c of any shape (B, *C) (a context vector, an image, a sequence), float; the null
  condition is learned (rows of NaN, which the built-in networks replace by a learned vector) or a given
  tensor of shape C (for networks of your own that cannot read NaN; zeros are a common choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Condition", "ClassLabels", "TensorCondition", "as_condition", "condition_from_meta", "null_like"]


@dataclass(frozen=True)
class ClassLabels:
    """Class labels 0..K-1 with the null label K."""

    num_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {self.num_classes!r}")

    def null(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        """(B,) long of the null label K."""
        return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)

    def is_null(self, c: Tensor) -> Tensor:
        """(B,) bool: rows holding the null label."""
        return c == self.num_classes

    def check(self, c: Tensor, batch: int) -> Tensor:
        """c as (B,) long with values in 0..K (K the null label), else a one-line error."""
        if c.shape != (batch,) or c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"class labels must be integers of shape ({batch},), got {c.dtype} "
                             f"{tuple(c.shape)}")
        return c

    def to_meta(self) -> dict:
        return {"kind": "classes", "num_classes": self.num_classes}


@dataclass(frozen=True)
class TensorCondition:
    """A tensor condition of shape C per row; null: "learned" (NaN rows) or a given tensor of shape C."""

    shape: tuple[int, ...]
    null_value: Tensor | None = field(default=None, compare=False)  # None: learned by the network

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"condition shape must be a non-empty tuple of positive ints, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        if self.null_value is not None and tuple(self.null_value.shape) != shape:
            raise ValueError(f"null condition must have the condition's shape {shape}, got "
                             f"{tuple(self.null_value.shape)}")

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def learned_null(self) -> bool:
        return self.null_value is None

    def null(self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, *C): NaN rows for a learned null, else the given null condition repeated."""
        if self.null_value is None:
            return torch.full((batch, *self.shape), float("nan"), device=device, dtype=dtype)
        return self.null_value.to(device=device, dtype=dtype).expand(batch, *self.shape).clone()

    def is_null(self, c: Tensor) -> Tensor:
        """(B,) bool: rows that are the null condition (all NaN, or equal to the given null)."""
        flat = c.flatten(1)
        if self.null_value is None:
            return torch.isnan(flat).all(1)
        return (flat == self.null_value.to(c.device, c.dtype).flatten()).all(1)

    def check(self, c: Tensor, batch: int) -> Tensor:
        """c as (B, *C) floating point, else a one-line error."""
        if tuple(c.shape) != (batch, *self.shape):
            raise ValueError(f"conditions must have shape ({batch}, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(c.shape)}")
        return c if c.dtype.is_floating_point else c.float()

    def to_meta(self) -> dict:
        null = "learned" if self.null_value is None else self.null_value.flatten().tolist()
        return {"kind": "tensor", "shape": list(self.shape), "null": null}


Condition = ClassLabels | TensorCondition


def as_condition(spec: int | Condition | None) -> Condition | None:
    """The condition a method or network is given: an int K > 0 means K class labels, 0 or None none."""
    if spec is None or isinstance(spec, ClassLabels | TensorCondition):
        return spec
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 0:
        raise ValueError(f"a condition is a number of classes (int >= 0), ClassLabels or TensorCondition; "
                         f"got {spec!r}")
    return ClassLabels(spec) if spec > 0 else None


def condition_from_meta(meta: dict | None, num_classes: int = 0) -> Condition | None:
    """The condition recorded in a checkpoint's metadata (see the to_meta methods); old runs: num_classes."""
    if not meta:
        return as_condition(int(num_classes))
    if meta.get("kind") == "classes":
        return ClassLabels(int(meta["num_classes"]))
    if meta.get("kind") == "tensor":
        shape = tuple(int(d) for d in meta["shape"])
        null = meta.get("null", "learned")
        return TensorCondition(shape, None if null == "learned" else torch.tensor(null).reshape(shape))
    raise ValueError(f"unknown condition in the checkpoint's metadata: {meta!r}")


def null_like(spec: int | Condition, label: Tensor) -> Tensor:
    """Null conditions shaped, placed and typed like `label` (B, ...)."""
    condition = as_condition(spec)
    if condition is None:
        raise ValueError("a null condition needs a conditional model (classes or a tensor condition)")
    if isinstance(condition, ClassLabels):
        return condition.null(label.shape[0], label.device)
    return condition.null(label.shape[0], label.device, label.dtype)
