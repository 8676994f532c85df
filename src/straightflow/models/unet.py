"""A small U-Net in the DDPM++ / ADM family for images x: (B, C, H, W), with one or two times and a label.

    c = TimeLabelEmbedding(time, end_time, label)                         (B, E), E = 4 * channels
    stem: conv3x3 C -> channels
    down: per level l (channels * mult_l), num_res_blocks ResBlocks (+ attention where the side is in
          attn_resolutions), then a stride-2 conv (except after the last level)
    middle: ResBlock, attention, ResBlock
    up: per level, num_res_blocks + 1 ResBlocks on [h, skip] (+ attention), then nearest x2 + conv3x3
    out: GroupNorm, SiLU, conv3x3 -> C (zero-initialised: the network starts as v = 0)

ResBlock (ADM's scale-shift norm): h = conv(SiLU(GN(x))); h = GN(h) * (1 + scale(c)) + shift(c);
out = skip(x) + conv(dropout(SiLU(h))), the last conv zero-initialised. Attention is plain softmax math
(:func:`~straightflow.models.conditioning.attention`), so torch.func.jvp runs through the whole network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from straightflow.models.conditioning import TimeLabelEmbedding, attention, jvp_forward_with_tangent

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

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(c))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class AttnBlock(nn.Module):
    """x + proj(softmax attention over the H*W positions of GN(x)), multi-head, proj zero-initialised."""

    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({ch})")
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, ch, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, ch // self.heads, h * w).transpose(-1, -2)
        out = attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])  # (B, heads, HW, d)
        return x + self.proj(out.transpose(-1, -2).reshape(b, ch, h, w))


class UNet(nn.Module):
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
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
                side *= 2
        self.out_norm, self.out = _norm(ch), _zero(nn.Conv2d(ch, c_img, 3, padding=1))

    def forward(
        self, x: Tensor, time: Tensor, end_time: Tensor | None = None, label: Tensor | None = None,
        tangent: tuple[Tensor, Tensor, Tensor | None] | None = None,
    ):
        """(B, C, H, W) -> (B, C, H, W); with tangent = (dx, dtime, dend_time), (out, J . tangent)."""
        if tangent is not None:
            return self.forward_with_tangent(x, time, end_time, label, *tangent)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"UNet expects x of shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        c = self.embed(time, end_time, label, x.shape[0])
        h = self.stem(x)
        hs = [h]
        for block in self.down:
            h = block(h, c) if isinstance(block, ResBlock) else block(h)
            if not isinstance(block, AttnBlock):
                hs.append(h)
            else:
                hs[-1] = h
        for block in self.mid:
            h = block(h, c) if isinstance(block, ResBlock) else block(h)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, hs.pop()], dim=1), c)
            else:
                h = block(h)
        return self.out(F.silu(self.out_norm(h)))

    def forward_with_tangent(
        self, x: Tensor, time: Tensor, end_time: Tensor | None, label: Tensor | None, dx: Tensor, dtime: Tensor,
        dend_time: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """(f, J_f . (dx, dtime, dend_time)) via torch.func.jvp; the tangent comes back detached."""
        return jvp_forward_with_tangent(self, x, time, end_time, label, dx, dtime, dend_time)
