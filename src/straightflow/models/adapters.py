"""Networks of your own in straightflow's calling convention.

Every trainer, loss and sampler here calls a network as

    velocity (flow matching, rectified flow):  model(x, t, label=c)     -> v(x, t)      (B, *D)
    average velocity (MeanFlow):               model(x, s, t, label=c)  -> u(x, s, t)   (B, *D)

with x: (B, *D), times (B,) in our direction (t = 0 source/noise, t = 1 data; u takes x at time s to time t:
x_t = x_s + (t - s) u(x_s, s, t)), and c None, class labels (B,) long, or a tensor condition (B, *C) (see
:mod:`straightflow.conditions`). A network may also take ``tangent=(dx, ds, dt)`` and return (u, J_u . tangent)
(MeanFlow's Jacobian-vector product in one pass, :mod:`straightflow.models.tangent`); without it MeanFlow
differentiates it with torch.func.

:class:`FlowModel` wraps any other module: ``net(x, t)`` or ``net(x, t, c)``, time as (B,) or (B, 1), and
the papers' own direction and argument order, e.g. the MeanFlow paper's ``net(z, t, r)`` with t = 1 noise,
z_r = z_t - (t - r) u (``FlowModel(net, n_times=2, direction="data_to_noise")``). :func:`as_flow_model` wraps
a module only when it does not already speak the convention.
"""

from __future__ import annotations

import inspect

from torch import Tensor, nn

__all__ = ["FlowModel", "as_flow_model", "speaks_convention", "DIRECTIONS", "TIME_SHAPES"]

DIRECTIONS = ("noise_to_data", "data_to_noise")
TIME_SHAPES = ("(B,)", "(B, 1)")
CONDITION_ARGS = ("none", "positional")  # or the name of a keyword argument, e.g. "cond"


class FlowModel(nn.Module):
    """A velocity or average-velocity network in straightflow's convention around your `net`.

    n_times: 1 for v(x, t), 2 for u(x, s, t).
    direction: "noise_to_data" (ours: t = 0 noise) or "data_to_noise" (t = 1 noise, as in the MeanFlow paper
        and Stable Diffusion 3's rectified flow). Reversing time maps tau -> 1 - tau and negates the output:
        v(x, tau) = -v_net(x, 1 - tau); u(x, s, t) = -u_net(x, 1 - s, 1 - t), the net's jump from its time
        1 - s to 1 - t.
    argument_order (n_times 2): "start,end" calls net(x, start, end) (our u(x, s, t); the MeanFlow paper's code
        u(z, t, r)); "end,start" calls net(x, end, start) (the paper's notation u(z_t, r, t)).
    time_shape: "(B,)" or "(B, 1)", how the net wants each time.
    condition: "none" (an unconditional net), "positional" (net(x, times..., c)), or a keyword name.
    """

    def __init__(self, net: nn.Module, n_times: int = 1, direction: str = "noise_to_data",
                 argument_order: str = "start,end", time_shape: str = "(B,)", condition: str = "none"):
        super().__init__()
        if n_times not in (1, 2):
            raise ValueError(f"n_times must be 1 (velocity v(x, t)) or 2 (average velocity u(x, s, t)), got {n_times}")
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; choose from: {', '.join(DIRECTIONS)}")
        if argument_order not in ("start,end", "end,start"):
            raise ValueError(f"unknown argument_order {argument_order!r}; choose from: start,end, end,start")
        if time_shape not in TIME_SHAPES:
            raise ValueError(f"unknown time_shape {time_shape!r}; choose from: {', '.join(TIME_SHAPES)}")
        if not condition or not isinstance(condition, str):
            raise ValueError(f"condition must be 'none', 'positional' or a keyword name, got {condition!r}")
        self.net, self.n_times, self.direction = net, n_times, direction
        self.argument_order, self.time_shape, self.condition = argument_order, time_shape, condition

    def _time(self, tau: Tensor) -> Tensor:
        tau = 1 - tau if self.direction == "data_to_noise" else tau
        return tau[:, None] if self.time_shape == "(B, 1)" else tau

    def forward(self, x: Tensor, time: Tensor, end_time: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        """v(x, time) (n_times 1) or u(x, s=time, t=end_time) (n_times 2; end_time None means time): (B, *D)."""
        times = [self._time(time)]
        if self.n_times == 2:
            times.append(self._time(time if end_time is None else end_time))
            if self.argument_order == "end,start":
                times.reverse()
        args, kwargs = [x, *times], {}
        if label is not None:
            if self.condition == "none":
                raise ValueError("a condition was given but this network takes none; wrap it with "
                                 "FlowModel(net, condition='positional' or the keyword name)")
            if self.condition == "positional":
                args.append(label)
            else:
                kwargs[self.condition] = label
        out = self.net(*args, **kwargs)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the network must return a tensor shaped like x {tuple(x.shape)}, got {got}")
        return -out if self.direction == "data_to_noise" else out


def speaks_convention(module: nn.Module) -> bool:
    """Whether `module`'s forward already takes straightflow's ``label=`` keyword (see the module docstring)."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return "label" in params


def as_flow_model(module: nn.Module, n_times: int, conditional: bool = False) -> nn.Module:
    """`module` itself when it speaks the convention, else ``FlowModel(module, n_times, condition=...)``: the
    condition goes positionally after the times when the data are conditional. For other time directions,
    argument orders or time shapes, wrap it in :class:`FlowModel` yourself."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"a model must be a torch.nn.Module, got {type(module).__name__}")
    if speaks_convention(module):
        return module
    return FlowModel(module, n_times, condition="positional" if conditional else "none")
