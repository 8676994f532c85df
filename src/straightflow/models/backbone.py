"""What the image networks (:class:`~straightflow.models.unet.UNet`, :class:`~straightflow.models.dit.DiT`)
share around their bodies: the input check, the conditioning vector c with its tangent, and the one-pass
tangent entry point that MeanFlow calls.

A subclass sets ``shape`` (C, H, W) and ``embed`` (a :class:`~straightflow.models.conditioning.
TimeLabelEmbedding`) and writes ``forward(x, time, end_time=None, label=None, tangent=None)``, starting with
``dx, c, dc = self.conditioning(x, time, end_time, label, tangent)``.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ImageBackbone"]


class ImageBackbone(nn.Module):
    """Base of the image networks: model(x, time, end_time=None, label=None), x (B, C, H, W)."""

    shape: tuple[int, int, int]
    time_feature_layer = ("embed.mlp.0", 0)  # the layer that reads the time features (embeddings.widen_to_two_times)

    def conditioning(
        self, x: Tensor, time: Tensor, end_time: Tensor | None, label: Tensor | None,
        tangent: tuple[Tensor, Tensor, Tensor | None] | None,
    ) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """(dx, c, dc): x checked to be (B, *shape); dx the tangent of x (None without a tangent); c (B, E) the
        embedding of (time, end_time, label) and dc its tangent along (dtime, dend_time) of tangent =
        (dx, dtime, dend_time)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{type(self).__name__} expects x of shape (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        dx, dtime, dend_time = (None, None, None) if tangent is None else tangent
        c, dc = self.embed.dual(time, end_time, label, x.shape[0], dtime, dend_time)
        return dx, c, dc

    def forward_with_tangent(
        self, x: Tensor, time: Tensor, end_time: Tensor | None, label: Tensor | None, dx: Tensor, dtime: Tensor,
        dend_time: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """(f, J_f . (dx, dtime, dend_time)) in one pass; the tangent carries no autograd history."""
        return self(x, time, end_time, label, tangent=(dx, dtime, dend_time))
