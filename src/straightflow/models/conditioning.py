"""The (time(s), label) embedding the image backbones share, with its tangent.

Conditioning vector (B, E) of one or two times and an optional label:
    c = MLP([phi(tau_1), (phi(tau_2))]) + e(label),
with phi the Fourier features of :class:`FourierTime`, (tau_1, tau_2) = time_inputs(s, t) for two-time
(average-velocity) networks, and e(K) the learned null-label vector (label None means the null label).
The label is discrete, so its tangent is zero: dc = J_MLP [dphi(tau_1), (dphi(tau_2))].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from straightflow.models import tangent as tg
from straightflow.models.embeddings import FourierTime, condition_embedding, time_features, time_inputs

__all__ = ["TimeLabelEmbedding"]


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
        self.label = condition_embedding(num_classes, dim)  # K classes or a tensor Condition

    def forward(self, time: Tensor, end_time: Tensor | None, label: Tensor | None, batch: int) -> Tensor:
        return self.dual(time, end_time, label, batch)[0]

    def dual(self, time: Tensor, end_time: Tensor | None, label: Tensor | None, batch: int,
             dtime: Tensor | None = None, dend_time: Tensor | None = None) -> tg.Dual:
        """(c, dc): c (B, dim) and its tangent along (dtime, dend_time), None when dtime is None.

        Missing end times and their tangents follow :func:`~straightflow.models.embeddings.time_features`.
        """
        if time.dim() != 1 or time.shape[0] != batch:
            raise ValueError(f"time must be (B,) with B = {batch}, got {tuple(time.shape)}")
        feats, dfeats = time_features(self.fourier, self.n_times, self.kind, time, end_time, dtime, dend_time)
        dtype = self.mlp[0].weight.dtype
        feats, dfeats = feats.to(dtype), None if dfeats is None else dfeats.to(dtype)
        c, dc = tg.linear(self.mlp[0], feats, dfeats)
        c, dc = tg.linear(self.mlp[2], *tg.silu(c, dc))
        if self.label is not None:
            c = c + self.label(label, batch, time.device)
        return c, dc
