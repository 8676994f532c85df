"""A small DiT (Peebles & Xie 2023): a transformer on image patches, conditioned by adaLN-Zero.

    tokens = Linear(patchify(x)) + pos                    (B, N, W), N = (H/p)(W/p), patches p x p x C
    c = TimeLabelEmbedding(time, end_time, label)         (B, W)
    block: (shift, scale, gate) x 2 = Linear(SiLU(c)) (zero-initialised, so every block starts as identity)
        h = h + gate_1 * Attn(LN(h) * (1 + scale_1) + shift_1)
        h = h + gate_2 * MLP(LN(h) * (1 + scale_2) + shift_2)
    out = unpatchify(Linear(LN(h) * (1 + scale) + shift))  (zero-initialised: the network starts as v = 0)

pos is the fixed 2-D sin-cos embedding. Every block computes its value and, when given one, its tangent (the
rules of :mod:`straightflow.models.tangent`), so `model(x, s, t, tangent=(dx, ds, dt))` returns
(u, J_u . (dx, ds, dt)) in one pass for MeanFlow; attention is plain softmax math, so torch.func.jvp runs through
it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from straightflow.models import tangent as tg
from straightflow.models.backbone import ImageBackbone
from straightflow.models.conditioning import TimeLabelEmbedding

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


def _tokens(z: Tensor | None) -> Tensor | None:
    """(B, W) -> (B, 1, W): a per-example modulation broadcast over the tokens."""
    return None if z is None else z[:, None]


def _chunks(z: Tensor | None, n: int) -> tuple:
    """(B, n W) -> n tensors (B, 1, W), or n Nones."""
    return (None,) * n if z is None else _tokens(z).chunk(n, dim=-1)


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

    def forward(self, h: Tensor, c: Tensor, dh: Tensor | None = None, dc: Tensor | None = None) -> tg.Dual:
        """(h, dh) for tokens h: (B, N, W), conditioning c: (B, W) and their tangents (or None)."""
        b, n, w = h.shape
        ada, dada = tg.linear(self.ada, *tg.silu(c, dc))
        sh1, sc1, g1, sh2, sc2, g2 = _chunks(ada, 6)
        dsh1, dsc1, dg1, dsh2, dsc2, dg2 = _chunks(dada, 6)

        def heads(z: Tensor) -> Tensor:  # (B, N, 3W) -> (B, 3, heads, N, d)
            return z.reshape(b, n, 3, self.heads, w // self.heads).permute(0, 2, 3, 1, 4)

        def merge(z: Tensor) -> Tensor:  # (B, heads, N, d) -> (B, N, W)
            return z.transpose(1, 2).reshape(b, n, w)

        a, da = tg.modulate(*tg.layer_norm(self.norm1, h, dh), sc1, dsc1, sh1, dsh1)
        qkv, dqkv = tg.apply_linear_map(heads, *tg.linear(self.qkv, a, da))
        dq, dk, dv = (None, None, None) if dqkv is None else dqkv.unbind(1)
        a, da = tg.attention(*qkv.unbind(1), dq, dk, dv)
        a, da = tg.dropout(self.drop, *tg.linear(self.proj, *tg.apply_linear_map(merge, a, da)))
        h, dh = _gated_residual(h, dh, g1, dg1, a, da)
        m, dm = tg.modulate(*tg.layer_norm(self.norm2, h, dh), sc2, dsc2, sh2, dsh2)
        fc1, act, drop, fc2 = self.mlp
        m, dm = tg.linear(fc2, *tg.dropout(drop, *tg.gelu_tanh(*tg.linear(fc1, m, dm))))
        return _gated_residual(h, dh, g2, dg2, m, dm)


def _gated_residual(h: Tensor, dh: Tensor | None, g: Tensor, dg: Tensor | None, a: Tensor,
                    da: Tensor | None) -> tg.Dual:
    """(h + g a, dh + dg a + g da)."""
    out = h + g * a
    if dh is None:
        return out, None
    with torch.no_grad():
        return out, dh + dg * a + g * da


class DiT(ImageBackbone):
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
        dx, c, dc = self.conditioning(x, time, end_time, label, tangent)
        h, dh = tg.linear(self.patch, *tg.apply_linear_map(self.patchify, x, dx))
        h = h + self.pos.to(x.dtype)
        for block in self.blocks:
            h, dh = block(h, c, dh, dc)
        ada, dada = tg.linear(self.ada, *tg.silu(c, dc))
        shift, scale = _chunks(ada, 2)
        dshift, dscale = _chunks(dada, 2)
        out, dout = tg.linear(self.head, *tg.modulate(*tg.layer_norm(self.norm, h, dh), scale, dscale, shift, dshift))
        out, dout = tg.apply_linear_map(self.unpatchify, out, dout)
        return out if tangent is None else (out, dout)
