"""A small DiT (Peebles & Xie 2023): a transformer on image patches, conditioned by adaLN-Zero.

    tokens = Linear(patchify(x)) + pos                    (B, N, W), N = (H/p)(W/p), patches p x p x C
    c = TimeLabelEmbedding(time, end_time, label)         (B, W)
    block: (shift, scale, gate) x 2 = Linear(SiLU(c)) (zero-initialised, so every block starts as identity)
        h = h + gate_1 * Attn(LN(h) * (1 + scale_1) + shift_1)
        h = h + gate_2 * MLP(LN(h) * (1 + scale_2) + shift_2)
    out = unpatchify(Linear(LN(h) * (1 + scale) + shift))  (zero-initialised: the network starts as v = 0)

pos is the fixed 2-D sin-cos embedding. Attention is plain softmax math, so torch.func.jvp runs through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from straightflow.models.conditioning import TimeLabelEmbedding, attention, jvp_forward_with_tangent

__all__ = ["DiT", "sincos_2d"]


def sincos_2d(rows: int, cols: int, dim: int) -> Tensor:
    """(rows * cols, dim) fixed positional embedding: half the features encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"DiT width must be divisible by 4 for the 2-D position embedding, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def embed(pos: Tensor) -> Tensor:
        arg = pos.to(torch.float64)[:, None] * omega
        return torch.cat([arg.sin(), arg.cos()], dim=1)

    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([embed(r.flatten()), embed(c.flatten())], dim=1).float()


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)
        self.ada = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        b, n, w = h.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        qkv = self.qkv(_modulate(self.norm1(h), sh1, sc1)).reshape(b, n, 3, self.heads, w // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, heads, N, d)
        a = attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, w)
        h = h + g1[:, None] * self.drop(self.proj(a))
        return h + g2[:, None] * self.mlp(_modulate(self.norm2(h), sh2, sc2))


class DiT(nn.Module):
    """v(x, t) (n_times = 1) or u(x, s, t) (n_times = 2) for images of `shape` (C, H, W), patch side p.

    Same call as the MLP: model(x, time, end_time=None, label=None), label None meaning the null label.
    """

    def __init__(
        self, shape: Sequence[int], width: int = 128, depth: int = 4, heads: int = 4, patch_size: int = 2,
        mlp_ratio: float = 4.0, dropout: float = 0.0, n_times: int = 1, time_inputs: str = "s,t-s",
        n_frequencies: int = 16, num_classes: int = 0,
    ) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"DiT takes images of shape (C, H, W), got {tuple(shape)}")
        c_img, height, w_img = (int(v) for v in shape)
        p = int(patch_size)
        if p < 1 or height % p or w_img % p:
            raise ValueError(f"patch_size {patch_size} must be >= 1 and divide the image side {height}x{w_img}")
        if width % heads:
            raise ValueError(f"DiT heads ({heads}) must divide the width ({width})")
        if depth < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad DiT settings: depth={depth}, dropout={dropout}")
        self.shape, self.p, self.n_times, self.num_classes = (c_img, height, w_img), p, n_times, num_classes
        self.grid = (height // p, w_img // p)
        self.patch = nn.Linear(c_img * p * p, width)
        self.register_buffer("pos", sincos_2d(*self.grid, width)[None], persistent=False)
        self.embed = TimeLabelEmbedding(width, n_times, time_inputs, n_frequencies, num_classes)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada, self.head = nn.Linear(width, 2 * width), nn.Linear(width, c_img * p * p)
        for layer in (self.ada, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, p * p * C)."""
        b, c, _, _ = x.shape
        (gh, gw), p = self.grid, self.p
        return x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p * p * c)

    def unpatchify(self, h: Tensor) -> Tensor:
        """(B, N, p * p * C) -> (B, C, H, W), the inverse of :meth:`patchify`."""
        b = h.shape[0]
        (gh, gw), p, c = self.grid, self.p, self.shape[0]
        return h.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)

    def forward(
        self, x: Tensor, time: Tensor, end_time: Tensor | None = None, label: Tensor | None = None,
        tangent: tuple[Tensor, Tensor, Tensor | None] | None = None,
    ):
        """(B, C, H, W) -> (B, C, H, W); with tangent = (dx, dtime, dend_time), (out, J . tangent)."""
        if tangent is not None:
            return self.forward_with_tangent(x, time, end_time, label, *tangent)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"DiT expects x of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        c = self.embed(time, end_time, label, x.shape[0])
        h = self.patch(self.patchify(x)) + self.pos.to(x.dtype)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=1)
        return self.unpatchify(self.head(_modulate(self.norm(h), shift, scale)))

    def forward_with_tangent(
        self, x: Tensor, time: Tensor, end_time: Tensor | None, label: Tensor | None, dx: Tensor, dtime: Tensor,
        dend_time: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """(f, J_f . (dx, dtime, dend_time)) via torch.func.jvp; the tangent comes back detached."""
        return jvp_forward_with_tangent(self, x, time, end_time, label, dx, dtime, dend_time)

