"""Pieces the image backbones share: the (time(s), label) embedding, jvp-safe attention, the tangent pass.

Conditioning vector (B, E) of one or two times and an optional label:
    c = MLP([phi(tau_1), (phi(tau_2))]) + e(label),
with phi the Fourier features of :class:`FourierTime`, (tau_1, tau_2) = time_inputs(s, t) for two-time
(average-velocity) networks, and e(K) the learned null-label vector (label None means the null label).

Attention is written out as softmax(Q K^T / sqrt(d)) V with einsum, not F.scaled_dot_product_attention,
whose fused CPU kernels may lack forward-mode AD: MeanFlow's torch.func.jvp goes through every op here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from straightflow.models.embeddings import FourierTime, LabelEmbedding, time_inputs

__all__ = ["TimeLabelEmbedding", "attention", "jvp_forward_with_tangent"]


class TimeLabelEmbedding(nn.Module):
    """(time, end_time, label) -> c: (B, dim). n_times = 1 ignores end_time; 2 embeds time_inputs(s, t)."""

    def __init__(self, dim: int, n_times: int = 1, kind: str = "s,t-s", n_frequencies: int = 16,
                 num_classes: int = 0) -> None:
        super().__init__()
        if n_times not in (1, 2):
            raise ValueError(f"n_times must be 1 or 2, got {n_times}")
        time_inputs(torch.zeros(1), torch.zeros(1), kind)  # validates kind
        self.n_times, self.kind, self.num_classes = n_times, kind, num_classes
        self.fourier = FourierTime(n_frequencies)
        self.mlp = nn.Sequential(nn.Linear(n_times * self.fourier.dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = LabelEmbedding(num_classes, dim) if num_classes > 0 else None

    def forward(self, time: Tensor, end_time: Tensor | None, label: Tensor | None, batch: int) -> Tensor:
        if time.dim() != 1 or time.shape[0] != batch:
            raise ValueError(f"time must be (B,) with B = {batch}, got {tuple(time.shape)}")
        if self.n_times == 1:
            feats = self.fourier(time)
        else:
            a, b = time_inputs(time, time if end_time is None else end_time, self.kind)
            feats = torch.cat([self.fourier(a), self.fourier(b)], dim=1)
        c = self.mlp(feats.to(self.mlp[0].weight.dtype))
        if self.label is not None:
            c = c + self.label(label, batch, time.device)
        return c


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for q, k, v: (B, heads, N, d) -> (B, heads, N, d), in plain ops."""
    w = torch.einsum("bhnd,bhmd->bhnm", q, k) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.einsum("bhnm,bhmd->bhnd", F.softmax(w, dim=-1), v)


def jvp_forward_with_tangent(
    model: nn.Module, x: Tensor, time: Tensor, end_time: Tensor | None, label: Tensor | None,
    dx: Tensor, dtime: Tensor, dend_time: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(f(x, time, end_time), J_f . (dx, dtime, dend_time) detached) by one torch.func.jvp pass.

    The output keeps its autograd graph (parameters get gradients from it); the tangent is detached, as
    MeanFlow's stop-gradient target needs. A missing dend_time counts as 0.
    """
    if end_time is None:
        out, dout = torch.func.jvp(lambda x_, s_: model(x_, s_, None, label=label), (x, time), (dx, dtime))
    else:
        dend = torch.zeros_like(end_time) if dend_time is None else dend_time
        out, dout = torch.func.jvp(
            lambda x_, s_, t_: model(x_, s_, t_, label=label), (x, time, end_time), (dx, dtime, dend)
        )
    return out, dout.detach()
