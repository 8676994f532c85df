"""A small U-Net in the DDPM++ / ADM family for images x: (B, C, H, W), with one or two times and a label.

    c = TimeLabelEmbedding(time, end_time, label)                         (B, E), E = 4 * channels
    stem: conv3x3 C -> channels
    down: per level l (channels * mult_l), num_res_blocks ResBlocks (+ attention where the side is in
          attn_resolutions), then a stride-2 conv (except after the last level)
    middle: ResBlock, attention, ResBlock
    up: per level, num_res_blocks + 1 ResBlocks on [h, skip] (+ attention), then nearest x2 + conv3x3
    out: GroupNorm, SiLU, conv3x3 -> C (zero-initialised: the network starts as v = 0)

ResBlock (ADM's scale-shift norm): h = conv(SiLU(GN(x))); h = GN(h) * (1 + scale(c)) + shift(c);
out = skip(x) + conv(dropout(SiLU(h))), the last conv zero-initialised.

Every block computes its value and, when given one, its tangent (the rules of :mod:`straightflow.models.tangent`),
so `model(x, s, t, tangent=(dx, ds, dt))` returns (u, J_u . (dx, ds, dt)) in one pass for MeanFlow; attention is
plain softmax math, so torch.func.jvp runs through the network too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from straightflow.models import tangent as tg
from straightflow.models.backbone import ImageBackbone
from straightflow.models.conditioning import TimeLabelEmbedding

__all__ = ["UNet", "parse_int_tuple"]


def parse_int_tuple(text: str | Sequence[int], what: str) -> tuple[int, ...]:
    """"1,2,2" (or "[1, 2, 2]", or a sequence) -> (1, 2, 2); "" -> (); ValueError on anything else."""
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    items = [v.strip() for v in text.strip().strip("[]()").split(",") if v.strip()]
    try:
        values = tuple(int(v) for v in items)
    except ValueError:
        raise ValueError(f"{what} takes comma-separated positive integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{what} takes comma-separated positive integers, got {text!r}")
    return values


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(ch, 8), ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * c_out)
        self.norm2, self.drop = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, c: Tensor, dx: Tensor | None = None, dc: Tensor | None = None) -> tg.Dual:
        """(h, dh) for x: (B, c_in, H, W), c: (B, emb) and their tangents (or None)."""
        h, dh = tg.conv2d(self.conv1, *tg.silu(*tg.group_norm(self.norm1, x, dx)))
        ss, dss = tg.linear(self.emb, *tg.silu(c, dc))
        scale, shift = ss[:, :, None, None].chunk(2, dim=1)
        dscale, dshift = (None, None) if dss is None else dss[:, :, None, None].chunk(2, dim=1)
        h, dh = tg.modulate(*tg.group_norm(self.norm2, h, dh), scale, dscale, shift, dshift)
        h, dh = tg.conv2d(self.conv2, *tg.dropout(self.drop, *tg.silu(h, dh)))
        if isinstance(self.skip, nn.Conv2d):
            x, dx = tg.conv2d(self.skip, x, dx)
        return x + h, None if dh is None else dx + dh


class AttnBlock(nn.Module):
    """x + proj(softmax attention over the H*W positions of GN(x)), multi-head, proj zero-initialised."""

    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({ch})")
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor, dx: Tensor | None = None) -> tg.Dual:
        b, ch, h, w = x.shape

        def heads(z: Tensor) -> Tensor:  # (B, 3C, H, W) -> (B, 3, heads, HW, d)
            return z.reshape(b, 3, self.heads, ch // self.heads, h * w).transpose(-1, -2)

        def merge(z: Tensor) -> Tensor:  # (B, heads, HW, d) -> (B, C, H, W)
            return z.transpose(-1, -2).reshape(b, ch, h, w)

        qkv, dqkv = tg.apply_linear_map(heads, *tg.conv2d(self.qkv, *tg.group_norm(self.norm, x, dx)))
        dq, dk, dv = (None, None, None) if dqkv is None else dqkv.unbind(1)
        out, dout = tg.attention(*qkv.unbind(1), dq, dk, dv)
        out, dout = tg.conv2d(self.proj, *tg.apply_linear_map(merge, out, dout))
        return x + out, None if dx is None else dx + dout


class Upsample(nn.Sequential):
    """Nearest x2, then conv3x3 (a Sequential, so that its weights keep the names older checkpoints use)."""

    def __init__(self, ch: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: Tensor, dx: Tensor | None = None) -> tg.Dual:
        return tg.conv2d(self[1], *tg.upsample_nearest(x, dx))


class UNet(ImageBackbone):
    """v(x, t) (n_times = 1) or u(x, s, t) (n_times = 2) for images of `shape` (C, H, W).

    Same call as the MLP: model(x, time, end_time=None, label=None); label (B,) long with the null label
    `num_classes` (or None) for the unconditional branch. H and W must be divisible by 2^(levels - 1).
    """

    def __init__(
        self, shape: Sequence[int], channels: int = 32, channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1, attn_resolutions: Sequence[int] = (), dropout: float = 0.0, n_times: int = 1,
        time_inputs: str = "s,t-s", n_frequencies: int = 16, num_classes: int = 0, heads: int = 4,
    ) -> None:
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"UNet takes images of shape (C, H, W), got {tuple(shape)}")
        c_img, height, width = (int(v) for v in shape)
        mult = tuple(channel_mult)
        if not mult or channels < 1 or num_res_blocks < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"bad UNet settings: channels={channels}, channel_mult={mult}, "
                             f"num_res_blocks={num_res_blocks}, dropout={dropout}")
        factor = 2 ** (len(mult) - 1)
        if height % factor or width % factor:
            raise ValueError(f"image side {height}x{width} is not divisible by 2^{len(mult) - 1} = {factor}, as "
                             f"channel_mult {','.join(map(str, mult))} ({len(mult)} levels) needs; use fewer levels")
        self.shape, self.n_times, self.num_classes = (c_img, height, width), n_times, num_classes
        emb = 4 * channels
        self.embed = TimeLabelEmbedding(emb, n_times, time_inputs, n_frequencies, num_classes)
        self.stem = nn.Conv2d(c_img, channels, 3, padding=1)
        attn = set(attn_resolutions)

        self.down, skips, ch, side = nn.ModuleList(), [channels], channels, height
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, channels * m, emb, dropout))
                ch = channels * m
                if side in attn:
                    self.down.append(AttnBlock(ch, heads))
                skips.append(ch)
            if level < len(mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                side //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb, dropout), AttnBlock(ch, heads), ResBlock(ch, ch, emb, dropout)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), channels * m, emb, dropout))
                ch = channels * m
                if side in attn:
                    self.up.append(AttnBlock(ch, heads))
            if level > 0:
                self.up.append(Upsample(ch))
                side *= 2
        self.out_norm, self.out = _norm(ch), _zero(nn.Conv2d(ch, c_img, 3, padding=1))

    def forward(
        self, x: Tensor, time: Tensor, end_time: Tensor | None = None, label: Tensor | None = None,
        tangent: tuple[Tensor, Tensor, Tensor | None] | None = None,
    ):
        """(B, C, H, W) -> (B, C, H, W); with tangent = (dx, dtime, dend_time), (out, J . tangent)."""
        dx, c, dc = self.conditioning(x, time, end_time, label, tangent)
        h, dh = tg.conv2d(self.stem, x, dx)
        skips = [(h, dh)]
        for block in self.down:
            if isinstance(block, ResBlock):
                h, dh = block(h, c, dh, dc)
            elif isinstance(block, AttnBlock):
                h, dh = block(h, dh)
                skips.pop()  # the attention output replaces its ResBlock's skip
            else:
                h, dh = tg.conv2d(block, h, dh)
            skips.append((h, dh))
        for block in self.mid:
            h, dh = block(h, c, dh, dc) if isinstance(block, ResBlock) else block(h, dh)
        for block in self.up:
            if isinstance(block, ResBlock):
                skip, dskip = skips.pop()
                h, dh = block(torch.cat([h, skip], dim=1), c, None if dh is None else torch.cat([dh, dskip], dim=1), dc)
            else:
                h, dh = block(h, dh)
        out, dout = tg.conv2d(self.out, *tg.silu(*tg.group_norm(self.out_norm, h, dh)))
        return out if tangent is None else (out, dout)
