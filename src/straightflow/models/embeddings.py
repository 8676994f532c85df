"""Time and label embeddings, each able to push a tangent forward alongside its value.

A scalar time tau in [0, 1] becomes Fourier features
    phi(tau) = [sin(w_1 tau), ..., sin(w_K tau), cos(w_1 tau), ..., cos(w_K tau)],
with angular frequencies w_k log-spaced in [w_min, w_max]. Their derivative in tau is closed form,
    d phi / d tau = [w cos(w tau), -w sin(w tau)],
which is what :meth:`FourierTime.with_tangent` returns for a tangent d tau (MeanFlow needs it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from straightflow.conditions import ClassLabels, as_condition

__all__ = ["FourierTime", "LabelEmbedding", "time_inputs", "time_features", "widen_to_two_times", "TIME_INPUTS"]

# How a two-time model sees its pair (s, t): the point x lives at s, the jump ends at t.
TIME_INPUTS = ("s,t-s", "s,t", "t,t-s")


class FourierTime(nn.Module):
    """phi: (B,) -> (B, 2K) fixed (not learned) Fourier features of one time input; (B, 2K + 1) with `raw`,
    which puts tau itself first (K may then be 0: the raw time alone)."""

    # w_max = 10: measured on 2-D MeanFlow (benchmarks/meanflow2d.py), w_max = 200 made the JVP target blow up
    # (d phi / d tau grows like w_max) and one-step W2 fell from 5.98x to 1.62x the floor at w_max = 10;
    # flow matching is as good with it.
    def __init__(self, n_frequencies: int = 16, w_min: float = 1.0, w_max: float = 10.0, raw: bool = False):
        super().__init__()
        if n_frequencies < 0 or (n_frequencies == 0 and not raw):
            raise ValueError(f"n_frequencies must be >= 1 (or 0 with the raw time), got {n_frequencies}")
        freqs = torch.exp(torch.linspace(math.log(w_min), math.log(w_max), n_frequencies))
        # Persistent: a checkpoint records the frequencies it was trained with, so a change of default is caught.
        self.register_buffer("freqs", freqs)
        self.raw = raw  # prepend tau itself: [tau, sin(w tau), cos(w tau)]
        self.dim = 2 * n_frequencies + int(raw)

    def forward(self, tau: Tensor) -> Tensor:
        arg = tau.to(self.freqs.dtype)[:, None] * self.freqs  # (B, K)
        parts = [arg.sin(), arg.cos()]
        if self.raw:
            parts.insert(0, tau.to(self.freqs.dtype)[:, None])
        return torch.cat(parts, dim=1)

    def with_tangent(self, tau: Tensor, dtau: Tensor) -> tuple[Tensor, Tensor]:
        """(phi(tau), J_phi dtau), both (B, dim): d sin(w tau) = w cos(w tau) dtau, d cos = -w sin dtau."""
        value = self(tau)
        k = self.freqs.shape[0]
        first = int(self.raw)  # [tau,] sin (k columns), cos (k columns)
        sin, cos = value[:, first:first + k], value[:, first + k:]
        dt = dtau.to(self.freqs.dtype)[:, None]
        tangent = [dt * self.freqs * cos, -dt * self.freqs * sin]
        if self.raw:
            tangent.insert(0, dt)
        return value, torch.cat(tangent, dim=1)


def time_inputs(s: Tensor, t: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """The pair of scalars a two-time network sees for the jump s -> t (x lives at s).

    "s,t-s" (default): the point's time and the interval; "s,t": both ends; "t,t-s": the end and the interval.
    Each is linear in (s, t), so a tangent (ds, dt) maps through the same function.
    """
    if kind == "s,t-s":
        return s, t - s
    if kind == "s,t":
        return s, t
    if kind == "t,t-s":
        return t, t - s
    raise ValueError(f"unknown time_inputs {kind!r}; choose from: {', '.join(TIME_INPUTS)}")


def time_features(
    fourier: FourierTime, n_times: int, kind: str, time: Tensor, end_time: Tensor | None,
    dtime: Tensor | None = None, dend_time: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Features of a network's time input(s) and their tangent: ((B, n_times * 2K), same or None).

    One-time networks see phi(time). Two-time networks see [phi(tau_1), phi(tau_2)] with (tau_1, tau_2) =
    time_inputs(time, end_time, kind); a missing end_time is time itself (u(x, t, t) = v(x, t)), so it moves
    with dtime, while a given end_time with a missing dend_time stays put (tangent 0).
    """
    if n_times == 1:
        taus, dtaus = [time], [dtime]
    else:
        end = time if end_time is None else end_time
        taus = list(time_inputs(time, end, kind))
        dtaus = [None, None]
        if dtime is not None:
            dend = (dtime if end_time is None else torch.zeros_like(dtime)) if dend_time is None else dend_time
            dtaus = list(time_inputs(dtime, dend, kind))
    feats = torch.cat([fourier(tau) for tau in taus], dim=1)
    if dtime is None:
        return feats, None
    return feats, torch.cat([fourier.with_tangent(tau, d)[1] for tau, d in zip(taus, dtaus, strict=True)], dim=1)


class LabelEmbedding(nn.Module):
    """Class label -> vector; index `num_classes` is the null label used for guidance (dropped labels)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, label: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if label is None:
            label = torch.full((batch,), self.num_classes, device=device, dtype=torch.long)
        return self.table(label)


class TensorConditionEmbedding(nn.Module):
    """Tensor condition c (B, *C) -> e (B, dim) = W_2 SiLU(W_1 flatten(c)); null rows (all NaN, the learned null
    of :class:`~straightflow.conditions.TensorCondition`) and c = None get a learned vector instead."""

    def __init__(self, shape: tuple[int, ...], dim: int):
        super().__init__()
        self.shape = tuple(shape)
        self.mlp = nn.Sequential(nn.Linear(math.prod(self.shape), dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, c: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if c is None:
            return self.null.expand(batch, -1)
        if tuple(c.shape[1:]) != self.shape:
            raise ValueError(f"condition must have shape (B, {', '.join(map(str, self.shape))}), got "
                             f"{tuple(c.shape)}")
        flat = c.reshape(batch, -1)
        null = torch.isnan(flat).all(1, keepdim=True)
        e = self.mlp(torch.nan_to_num(flat).to(self.null.dtype))
        return torch.where(null, self.null.to(e.dtype), e)


def condition_embedding(spec, dim: int) -> nn.Module | None:
    """The embedding of a network's condition into `dim` features: a label table for K classes, an MLP for a
    tensor condition, None without one. spec: int K, or a straightflow.conditions Condition."""
    condition = as_condition(spec)
    if condition is None:
        return None
    if isinstance(condition, ClassLabels):
        return LabelEmbedding(condition.num_classes, dim)
    return TensorConditionEmbedding(condition.shape, dim)


def widen_to_two_times(state: dict, model: nn.Module, prefix: str = "") -> dict:
    """A one-time network's state dict (v(x, t)) adapted to the two-time `model` (u(x, s, t)), so that
    u(x, s, t) = v(x, tau_1) at every t: the teacher's weights start a distilled average-velocity student.

    The network's first layer on the time features, named by `model.time_feature_layer` = (name, column
    where the first time's features begin), reads [..., phi(tau_1), phi(tau_2), ...] where the teacher read
    [..., phi(t), ...]: the teacher's columns go to tau_1 and tau_2's columns are zero. tau_1 = s for the
    default time_inputs "s,t-s", so the student starts as u(x, s, t) = v(x, s). `prefix` is the state's key
    prefix (e.g. "ema."). Every other entry is returned as it is.
    """
    name, start = model.time_feature_layer
    key = f"{prefix}{name}.weight"
    w = state[key]
    target = dict(model.named_parameters())[f"{name}.weight"]
    features = target.shape[1] - w.shape[1]
    if w.dim() != 2 or target.shape[0] != w.shape[0] or features <= 0:
        raise ValueError(f"cannot widen {key} of shape {tuple(w.shape)} to the two-time layer {tuple(target.shape)}")
    end = start + features
    widened = torch.cat([w[:, :end], w.new_zeros(w.shape[0], features), w[:, end:]], dim=1)
    return {**state, key: widened}
