"""Data of your own as a :class:`~straightflow.data.base.DataSource`: tensors, torch Datasets, DataLoaders and
iterators of batches, for vectors and images alike, with class labels or tensor conditions optional.

    as_data_source(x)                     x: (N, *D) tensor or array
    as_data_source((x, c))                c: (N,) integer class labels, or (N, *C) tensor conditions
    as_data_source(dataset)               a map-style Dataset whose items are x or (x, c); a DataLoader over one
    as_data_source(iter_of_batches)       batches x or (x, c), (B, *D): a generator, a list of batches, a
                                          DataLoader over an IterableDataset

Finite data (tensors, map-style Datasets) become a :class:`TensorSource`: its rows are gathered into memory
once, the last ceil(N / 10) are held out for metrics, and the trainer walks the rest in deterministic epochs
(:mod:`straightflow.data.epochs`) sharded across torchrun ranks, so a resumed run sees the batches an unbroken
one would. Iterators become a :class:`StreamSource`: batches are taken as they come (the first one is kept for
metrics), so a resumed run continues the stream rather than replaying it.

What the condition is follows from c: integer (N,) labels are K = max + 1 classes (or `num_classes`), anything
else a tensor condition of shape C whose null is learned unless `null_condition` (shape C) is given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from straightflow.conditions import ClassLabels, Condition, TensorCondition
from straightflow.data.base import DataSource, check_count, heldout_index
from straightflow.rng import randint

__all__ = ["TensorSource", "StreamSource", "as_data_source", "infer_condition", "condition_of", "HELDOUT_FRACTION"]

HELDOUT_FRACTION = 0.1


def _as_tensor(a, what: str) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach()
    if isinstance(a, np.ndarray | list | tuple | int | float):
        return torch.as_tensor(np.asarray(a))
    raise ValueError(f"{what} must be a tensor or array, got {type(a).__name__}")


def _split_item(item) -> tuple[Tensor, Tensor | None]:
    """(x, c or None) from a Dataset item or a batch: x, (x,), (x, c), or a dict with "x" and optional "cond"."""
    if isinstance(item, dict):
        if "x" not in item:
            raise ValueError(f"dict items need an 'x' entry (and optionally 'cond'), got keys {sorted(item)}")
        return _as_tensor(item["x"], "x"), None if item.get("cond") is None else _as_tensor(item["cond"], "cond")
    if isinstance(item, tuple | list) and not isinstance(item, np.ndarray):
        if len(item) == 1:
            return _as_tensor(item[0], "x"), None
        if len(item) == 2:
            return _as_tensor(item[0], "x"), None if item[1] is None else _as_tensor(item[1], "condition")
        raise ValueError(f"items must be x or (x, condition), got a sequence of {len(item)}")
    return _as_tensor(item, "x"), None


def infer_condition(c: Tensor | None, num_classes: int | None = None, null_condition: Tensor | None = None
                    ) -> Condition | None:
    """The condition of rows c: (N,) integers -> ClassLabels(num_classes or max + 1); else a TensorCondition
    of shape c.shape[1:] (null learned, or `null_condition`)."""
    if c is None:
        return None
    if c.dim() == 1 and not c.dtype.is_floating_point and not c.dtype.is_complex:
        k = int(num_classes) if num_classes else int(c.max()) + 1
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= k):
            raise ValueError(f"class labels must lie in 0..{k - 1}, got values in {int(c.min())}..{int(c.max())}")
        return ClassLabels(k)
    if num_classes:
        raise ValueError(f"num_classes={num_classes} needs (N,) integer labels, got {c.dtype} {tuple(c.shape)}")
    shape = tuple(c.shape[1:]) or (1,)
    return TensorCondition(shape, None if null_condition is None else _as_tensor(null_condition, "null").float())


def condition_of(data: DataSource) -> Condition | None:
    """A source's condition: its `condition` attribute, else class labels from `num_classes` (0: none)."""
    condition = getattr(data, "condition", None)
    if condition is not None:
        return condition
    k = int(getattr(data, "num_classes", 0) or 0)
    return ClassLabels(k) if k > 0 else None


def _conditions(c: Tensor | None, condition: Condition | None) -> Tensor | None:
    if c is None:
        return None
    if isinstance(condition, ClassLabels):
        return c.long()
    return c.float().reshape(c.shape[0], *condition.shape)


class TensorSource(DataSource):
    """N rows x (N, *D) and optional conditions c (N, ...); the last ceil(N / 10) rows are held out.

    `sample` draws training rows uniformly with replacement; the trainer walks them in epochs through
    `rows(index)`. Held-out draws: distinct rows in a seeded order while n <= the held-out count, with
    replacement beyond; `heldout_pair` splits them into two disjoint halves.
    """

    def __init__(self, x, cond=None, name: str = "tensor", num_classes: int | None = None,
                 null_condition: Tensor | None = None) -> None:
        x = _as_tensor(x, "data").float()
        if x.dim() < 2:
            raise ValueError(f"data must have shape (N, *D) with at least one feature, got {tuple(x.shape)}")
        if x.shape[0] < 2:
            raise ValueError(f"'{name}' has {x.shape[0]} rows; need at least 2 to hold one out")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"'{name}' holds NaN or infinite values; clean or drop those rows first")
        c = None if cond is None else _as_tensor(cond, "conditions")
        if c is not None and c.shape[0] != x.shape[0]:
            raise ValueError(f"conditions have {c.shape[0]} rows but the data {x.shape[0]}")
        self.condition = infer_condition(c, num_classes, null_condition)
        c = _conditions(c, self.condition)
        n_held = math.ceil(HELDOUT_FRACTION * x.shape[0])
        self.name, self.shape = name, tuple(int(d) for d in x.shape[1:])
        self.train_rows, self.heldout_rows = x[:-n_held], x[-n_held:]
        self.train_cond = None if c is None else c[:-n_held]
        self.heldout_cond = None if c is None else c[-n_held:]

    @property
    def num_classes(self) -> int:
        return self.condition.num_classes if isinstance(self.condition, ClassLabels) else 0

    @property
    def num_rows(self) -> int:
        return int(self.train_rows.shape[0])

    def rows(self, index: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """(training rows at `index` (B,), their conditions or None)."""
        return self.train_rows[index], None if self.train_cond is None else self.train_cond[index]

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        return self.rows(randint(self.num_rows, check_count(n), generator, self.train_rows.device))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_labeled(n, generator)[0]

    def to(self, device: torch.device | str) -> TensorSource:
        moved = copy.copy(self)
        moved.train_rows = self.train_rows.to(device)
        moved.train_cond = None if self.train_cond is None else self.train_cond.to(device)
        return moved

    def heldout_labeled(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
        index = heldout_index(self.heldout_rows.shape[0], n, torch.Generator().manual_seed(int(seed)))
        return self.heldout_rows[index], None if self.heldout_cond is None else self.heldout_cond[index]

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        return self.heldout_labeled(n, seed)[0]

    @property
    def max_heldout_pair(self) -> int:
        """Half the held-out rows: two disjoint halves are the only independent draws a finite set has."""
        return int(self.heldout_rows.shape[0]) // 2

    def heldout_pair(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Two disjoint sets of n held-out rows (a seeded random order split in two); n <= max_heldout_pair."""
        if check_count(n) > self.max_heldout_pair:
            raise ValueError(f"n={n} is more than half of the {self.heldout_rows.shape[0]} held-out rows of "
                             f"'{self.name}'; use n <= {self.max_heldout_pair} (the noise floor needs two disjoint "
                             "held-out draws)")
        order = torch.randperm(self.heldout_rows.shape[0], generator=torch.Generator().manual_seed(int(seed)))
        return self.heldout_rows[order[:n]], self.heldout_rows[order[n:2 * n]]


class StreamSource(DataSource):
    """Batches from an iterator, x (B, *D) or (x, c); the first batch is held out for metrics.

    Draws of n rows take the next rows of the stream (a batch is split or batches joined as needed); the
    generator is not used. When a finite iterable runs out it is started again (an epoch); a one-shot
    iterator that runs out is an error.
    """

    draws_on_any_device = False

    def __init__(self, batches: Iterable, name: str = "stream", num_classes: int | None = None,
                 null_condition: Tensor | None = None) -> None:
        self._iterable, self._it = batches, iter(batches)
        self.name = name
        first_x, first_c = self._next_batch()
        if first_x.dim() < 2:
            raise ValueError(f"batches must have shape (B, *D), got {tuple(first_x.shape)}")
        labels = first_c is not None and first_c.dim() == 1 and not first_c.dtype.is_floating_point
        if labels and not num_classes:
            raise ValueError(f"the stream '{name}' carries class labels: pass num_classes= (its first batch cannot "
                             "tell how many classes there are)")
        self.condition = infer_condition(first_c, num_classes, null_condition)
        self.shape = tuple(int(d) for d in first_x.shape[1:])
        self.heldout_rows, self.heldout_cond = first_x, _conditions(first_c, self.condition)
        self._buf_x, self._buf_c = first_x[:0], None if first_c is None else self.heldout_cond[:0]

    @property
    def num_classes(self) -> int:
        return self.condition.num_classes if isinstance(self.condition, ClassLabels) else 0

    def _next_batch(self) -> tuple[Tensor, Tensor | None]:
        try:
            item = next(self._it)
        except StopIteration:
            if self._it is self._iterable:  # a one-shot iterator: cannot start over
                raise ValueError(f"the data iterator '{self.name}' ran out; pass a re-iterable (a DataLoader, a "
                                 "list) or an endless generator") from None
            self._it = iter(self._iterable)
            item = next(self._it, None)
            if item is None:
                raise ValueError(f"the data iterable '{self.name}' yields no batches") from None
        x, c = _split_item(item)
        return x.float(), c

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        while self._buf_x.shape[0] < check_count(n):
            x, c = self._next_batch()
            if tuple(x.shape[1:]) != self.shape:
                raise ValueError(f"a batch has rows of shape {tuple(x.shape[1:])}, the first had {self.shape}")
            self._buf_x = torch.cat([self._buf_x, x])
            if self._buf_c is not None:
                if c is None:
                    raise ValueError("a batch came without conditions although the first one had them")
                self._buf_c = torch.cat([self._buf_c, _conditions(c, self.condition)])
        x, self._buf_x = self._buf_x[:n], self._buf_x[n:]
        c = None
        if self._buf_c is not None:
            c, self._buf_c = self._buf_c[:n], self._buf_c[n:]
        return x, c

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_labeled(n, generator)[0]

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        return self.heldout_rows[heldout_index(self.heldout_rows.shape[0], n, torch.Generator().manual_seed(int(seed)))]


def _is_map_dataset(data) -> bool:
    """A map-style Dataset (indexable, with a length); Python lists and tuples count as lists of batches."""
    if isinstance(data, Tensor | np.ndarray | list | tuple | dict | str):
        return False
    return hasattr(data, "__getitem__") and hasattr(data, "__len__")


def as_data_source(data, name: str | None = None, num_classes: int | None = None,
                   null_condition: Tensor | None = None) -> DataSource:
    """A DataSource for data of your own (see the module docstring); a DataSource is returned as it is."""
    if isinstance(data, DataSource):
        return data
    kw = {"num_classes": num_classes, "null_condition": null_condition}
    if isinstance(data, Tensor | np.ndarray):
        return TensorSource(data, name=name or "tensor", **kw)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(a, Tensor | np.ndarray) for a in data):
        return TensorSource(data[0], data[1], name=name or "tensor", **kw)
    if isinstance(data, torch.utils.data.DataLoader):
        if isinstance(data.dataset, torch.utils.data.IterableDataset):
            return StreamSource(data, name=name or type(data.dataset).__name__, **kw)
        data = data.dataset  # its rows, walked in our own deterministic epochs (the loader's order is not used)
    if _is_map_dataset(data) and not isinstance(data, torch.utils.data.IterableDataset):
        if len(data) < 2:
            raise ValueError(f"a dataset needs at least 2 items, got {len(data)}")
        items = [_split_item(data[i]) for i in range(len(data))]
        if len({it[1] is None for it in items}) != 1:
            raise ValueError("some dataset items carry a condition and some do not")
        x = torch.stack([it[0] for it in items])
        c = None if items[0][1] is None else torch.stack([it[1] for it in items])
        return TensorSource(x, c, name=name or type(data).__name__, **kw)
    if isinstance(data, Iterable | Iterator):
        return StreamSource(data, name=name or type(data).__name__, **kw)
    raise ValueError(f"cannot use {type(data).__name__} as data: pass a tensor (N, *D), a pair (x, c), a torch "
                     "Dataset or DataLoader, or an iterable of batches")


