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

__all__ = ["FourierTime", "LabelEmbedding", "time_inputs", "time_features", "TIME_INPUTS"]

# How a two-time model sees its pair (s, t): the point x lives at s, the jump ends at t.
TIME_INPUTS = ("s,t-s", "s,t", "t,t-s")


class FourierTime(nn.Module):
    """phi: (B,) -> (B, 2K) fixed (not learned) Fourier features of one time input."""

    # w_max = 10: measured on 2-D MeanFlow (benchmarks/meanflow2d.py), w_max = 200 made the JVP target blow up
    # (d phi / d tau grows like w_max) and one-step W2 fell from 5.98x to 1.62x the floor at w_max = 10;
    # flow matching is as good with it.
    def __init__(self, n_frequencies: int = 16, w_min: float = 1.0, w_max: float = 10.0):
        super().__init__()
        if n_frequencies < 1:
            raise ValueError(f"n_frequencies must be >= 1, got {n_frequencies}")
        freqs = torch.exp(torch.linspace(math.log(w_min), math.log(w_max), n_frequencies))
        # Persistent: a checkpoint records the frequencies it was trained with, so a change of default is caught.
        self.register_buffer("freqs", freqs)
        self.dim = 2 * n_frequencies

    def forward(self, tau: Tensor) -> Tensor:
        arg = tau.to(self.freqs.dtype)[:, None] * self.freqs  # (B, K)
        return torch.cat([arg.sin(), arg.cos()], dim=1)

    def with_tangent(self, tau: Tensor, dtau: Tensor) -> tuple[Tensor, Tensor]:
        """(phi(tau), J_phi dtau), both (B, 2K)."""
        arg = tau.to(self.freqs.dtype)[:, None] * self.freqs
        sin, cos = arg.sin(), arg.cos()
        dt = dtau.to(self.freqs.dtype)[:, None] * self.freqs
        return torch.cat([sin, cos], dim=1), torch.cat([dt * cos, -dt * sin], dim=1)


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
