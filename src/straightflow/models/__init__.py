"""Networks. One call signature: model(x, time) = v(x, t); model(x, time, end_time) = u(x, s, t).

MLP for vectors (B, D); UNet and DiT for images (B, C, H, W).
"""

from straightflow.models.dit import DiT
from straightflow.models.mlp import MLP
from straightflow.models.unet import UNet

__all__ = ["MLP", "UNet", "DiT"]
