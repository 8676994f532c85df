r"""Layers that carry a tangent beside their value: forward-mode differentiation written by hand.

Every function here maps a primal input h and its tangent dh (the directional derivative of h along the
tangent of the network's inputs) to (f(h), J_f(h) dh). The primal is computed as the network's plain
forward computes it (same ops, bit for bit, with its autograd graph); the tangent is computed under
``torch.no_grad`` from the weights and the primal's activations, so backward sees only the primal graph.
That is what MeanFlow needs: u_theta with gradients and sg(J_u . (v, 1, 0)) in one pass, at about the cost
of one forward more, against 2-3x for ``torch.func.jvp`` through the same network (which differentiates
the tangent too and keeps its graph).

A tangent of None means "no tangent": the function is the plain layer and returns (f(h), None), so one
forward serves both uses. The rules, for x: (B, *D) and the layer's weights fixed:

    linear / conv / patchify / upsampling (linear maps A):  d(A x + b) = A dx
    SiLU:  d silu(a) = sigma(a) (1 + a (1 - sigma(a))) da
    GELU (tanh form):  d gelu(a) = [0.5 (1 + tanh k) + 0.5 a (1 - tanh^2 k) c (1 + 3 b a^2)] da,
                       k = c (a + b a^3), c = sqrt(2 / pi), b = 0.044715
    normalisation over a group G (GroupNorm, LayerNorm), xhat = (x - mean_G x) * r, r = 1 / sqrt(var_G x + eps):
        d xhat = r (dx - mean_G dx) - xhat mean_G(xhat dx) * r,  d(gamma xhat + beta) = gamma d xhat
    dropout with mask m:  d(m x) = m dx (the same mask on both sides)
    attention, P = softmax(q k^T / sqrt(d)), o = P v:
        dS = (dq k^T + q dk^T) / sqrt(d),   dP = P (dS - rowsum(P dS)),   do = dP v + P dv
           = (P dS) v - rowsum(P dS) o + P dv
    scale-shift modulation h (1 + a) + b:  dh (1 + a) + h da + db

Where a Jacobian is symmetric (elementwise activations, the normalisations), J dx = J^T dx and torch's fused
backward kernels compute it in one pass. Each rule is checked against ``torch.func.jvp`` in float64 in
tests/models/test_tangent.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Dual", "linear", "conv2d", "silu", "gelu_tanh", "group_norm", "layer_norm", "dropout", "attention",
    "modulate", "upsample_nearest", "apply_linear_map",
]

Dual = tuple[Tensor, Tensor | None]  # (value, tangent or None)


def apply_linear_map(fn, x: Tensor, dx: Tensor | None) -> Dual:
    """(fn(x), fn(dx)) for a map fn that is linear in its input (reshape, permute, slicing, interpolation)."""
    return fn(x), None if dx is None else fn(dx)


def linear(layer: nn.Linear, x: Tensor, dx: Tensor | None) -> Dual:
    """(W x + b, W dx) for x: (..., in)."""
    y = layer(x)
    if dx is None:
        return y, None
    with torch.no_grad():
        return y, F.linear(dx, layer.weight)


def conv2d(layer: nn.Conv2d, x: Tensor, dx: Tensor | None) -> Dual:
    """(conv(x) + b, conv(dx)) for x: (B, C, H, W); the convolution's stride and padding on both sides."""
    y = layer(x)
    if dx is None:
        return y, None
    with torch.no_grad():
        return y, F.conv2d(dx, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def silu(a: Tensor, da: Tensor | None) -> Dual:
    """(a sigma(a), sigma(a) (1 + a (1 - sigma(a))) da)."""
    y = F.silu(a)
    if da is None:
        return y, None
    with torch.no_grad():
        # An elementwise map's Jacobian is diagonal, so J da = J^T da: torch's fused backward kernel computes it.
        return y, torch.ops.aten.silu_backward(da.to(a.dtype), a)


def gelu_tanh(a: Tensor, da: Tensor | None) -> Dual:
    """GELU in its tanh approximation and its derivative (see the module docstring)."""
    y = F.gelu(a, approximate="tanh")
    if da is None:
        return y, None
    with torch.no_grad():
        return y, torch.ops.aten.gelu_backward(da.to(a.dtype), a, approximate="tanh")  # diagonal: J da = J^T da


def _float(x: Tensor, like: Tensor) -> Tensor:
    """x in float32 at least, laid out as `like` (channels-last stays channels-last: no transposing copies)."""
    fmt = torch.contiguous_format
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        fmt = torch.channels_last
    return x.to(torch.promote_types(x.dtype, torch.float32)).contiguous(memory_format=fmt)


def group_norm(norm: nn.GroupNorm, x: Tensor, dx: Tensor | None) -> Dual:
    """GroupNorm of x: (B, C, *S) and its tangent; statistics over each group of C / G channels and S.

    The Jacobian of xhat in x is symmetric, r (I - 11^T / n - xhat xhat^T / n), so J dx is torch's fused group-norm
    backward applied to dx (without the affine weight, which multiplies after). Float32 at least, as autocast
    runs group norm.
    """
    y = norm(x)
    if dx is None:
        return y, None
    with torch.no_grad():
        b, c, g = x.shape[0], x.shape[1], norm.num_groups
        xf, dxf = _float(x, x), _float(dx, x)
        hw = xf[0, 0].numel()
        # Statistics from torch's group-norm kernel: torch.var_mean is several times slower on the CPU.
        _, mean, rstd = torch.ops.aten.native_group_norm(xf, None, None, b, c, hw, g, norm.eps)
        d = torch.ops.aten.native_group_norm_backward(dxf, xf, mean, rstd, None, b, c, hw, g,
                                                      [True, False, False])[0]
        if norm.affine:
            d = d * norm.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return y, d


def layer_norm(norm: nn.LayerNorm, x: Tensor, dx: Tensor | None) -> Dual:
    """LayerNorm over the last len(normalized_shape) dims of x and its tangent (symmetric Jacobian, as above)."""
    y = norm(x)
    if dx is None:
        return y, None
    with torch.no_grad():
        shape = norm.normalized_shape
        xf, dxf = _float(x, x), _float(dx, x)
        _, mean, rstd = torch.ops.aten.native_layer_norm(xf, shape, None, None, norm.eps)
        d = torch.ops.aten.native_layer_norm_backward(dxf, xf, shape, mean, rstd, None, None, [True, False, False])[0]
        if norm.weight is not None:
            d = d * norm.weight
        return y, d


def dropout(drop: nn.Dropout, x: Tensor, dx: Tensor | None) -> Dual:
    """Dropout with one mask for value and tangent.

    Without a tangent this is the module itself. With one, the mask is drawn as torch's unfused (CPU) kernel
    draws it, bernoulli(1 - p) on a tensor like x, so on the CPU a tangent pass sees the masks a plain forward
    from the same RNG state sees (MeanFlow's JVP modes are compared that way in the tests).
    """
    if dx is None or not drop.training or drop.p == 0.0:
        return drop(x), dx
    mask = torch.empty_like(x).bernoulli_(1 - drop.p).div_(1 - drop.p)
    return x * mask, dx * mask


def attention(q: Tensor, k: Tensor, v: Tensor, dq: Tensor | None = None, dk: Tensor | None = None,
              dv: Tensor | None = None) -> Dual:
    """softmax(q k^T / sqrt(d)) v and its tangent, for q, k, v: (B, heads, N, d) -> (B, heads, N, d).

    Plain softmax math rather than F.scaled_dot_product_attention, whose fused CPU kernels lack forward-mode
    AD (the "func" JVP modes go through this too). Tangents all None, or all given.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = F.softmax(torch.einsum("bhnd,bhmd->bhnm", q, k) * scale, dim=-1)
    o = torch.einsum("bhnm,bhmd->bhnd", p, v)
    if dq is None:
        return o, None
    with torch.no_grad():
        ds = (torch.einsum("bhnd,bhmd->bhnm", dq, k) + torch.einsum("bhnd,bhmd->bhnm", q, dk)) * scale
        pds = p * ds
        do = (torch.einsum("bhnm,bhmd->bhnd", pds, v) - pds.sum(-1, keepdim=True) * o
              + torch.einsum("bhnm,bhmd->bhnd", p, dv))
        return o, do


def modulate(h: Tensor, dh: Tensor | None, scale: Tensor, dscale: Tensor | None, shift: Tensor,
             dshift: Tensor | None) -> Dual:
    """(h (1 + scale) + shift, dh (1 + scale) + h dscale + dshift), scale and shift broadcast against h."""
    y = h * (1 + scale) + shift
    if dh is None:
        return y, None
    with torch.no_grad():
        return y, torch.addcmul(dshift, h, dscale).addcmul_(dh, 1 + scale)


def upsample_nearest(x: Tensor, dx: Tensor | None, factor: int = 2) -> Dual:
    """Nearest-neighbour upsampling (a linear map) of (B, C, H, W) by `factor`."""
    return apply_linear_map(lambda z: F.interpolate(z, scale_factor=factor, mode="nearest"), x, dx)
