"""Networks. One call signature: model(x, time) = v(x, t); model(x, time, end_time) = u(x, s, t)."""

from straightflow.models.mlp import MLP

__all__ = ["MLP"]
