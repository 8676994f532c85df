"""straightflow: Flow Matching, Rectified Flow and MeanFlow.

The front door: the objects most programs need, importable from the package itself.

    from straightflow import AffinePath, LinearScheduler, FlowMatching, MeanFlow, MLP, Trainer, odeint

Time convention everywhere: t = 0 is the source (noise), t = 1 the data, x_t = (1 - t) x0 + t x1 on the linear
path; MeanFlow's u(x, s, t) takes x at time s to time t. Deeper modules hold the rest (see docs/).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it. Loaded on first use (PEP 562), so `import straightflow` and the command
# line stay quick and no module has to import the whole library to read __version__.
_EXPORTS = {
    "AffinePath": "straightflow.paths.affine",
    "LinearScheduler": "straightflow.paths.schedule",
    "get_scheduler": "straightflow.paths.schedule",
    "CoupledBatch": "straightflow.paths.coupling",
    "ot_coupling": "straightflow.paths.coupling",
    "sinkhorn_coupling": "straightflow.paths.coupling",
    "UniformTime": "straightflow.methods.time_sampling",
    "LogitNormalTime": "straightflow.methods.time_sampling",
    "FlowMatching": "straightflow.methods.flow_matching",
    "flow_matching_loss": "straightflow.methods.flow_matching",
    "MeanFlow": "straightflow.methods.mean_flow",
    "mean_flow_loss": "straightflow.methods.mean_flow",
    "MLP": "straightflow.models",
    "UNet": "straightflow.models",
    "DiT": "straightflow.models",
    "odeint": "straightflow.solvers.integrate",
    "average_velocity_sample": "straightflow.solvers.one_step",
    "log_likelihood": "straightflow.solvers.likelihood",
    "RunConfig": "straightflow.training.config",
    "apply_overrides": "straightflow.training.config",
    "Trainer": "straightflow.training.trainer",
    "Run": "straightflow.runs",
    "load_run": "straightflow.runs",
    "sample_run": "straightflow.runs",
    "evaluate_run": "straightflow.evaluation",
    "save_pretrained": "straightflow.hub",
    "ClassLabels": "straightflow.conditions",
    "TensorCondition": "straightflow.conditions",
    "FlowModel": "straightflow.models.adapters",
    "as_flow_model": "straightflow.models.adapters",
    "as_data_source": "straightflow.data.tensors",
    "from_pretrained": "straightflow.hub",
    "push_to_hub": "straightflow.hub",
}

__all__ = [
    "__version__",
    "AffinePath", "LinearScheduler", "get_scheduler",
    "CoupledBatch", "ot_coupling", "sinkhorn_coupling",
    "UniformTime", "LogitNormalTime",
    "FlowMatching", "flow_matching_loss", "MeanFlow", "mean_flow_loss",
    "MLP", "UNet", "DiT",
    "odeint", "average_velocity_sample", "log_likelihood",
    "RunConfig", "apply_overrides", "Trainer",
    "Run", "load_run", "sample_run", "evaluate_run",
    "save_pretrained", "from_pretrained", "push_to_hub",
    "ClassLabels", "TensorCondition", "FlowModel", "as_flow_model", "as_data_source",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'straightflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from straightflow.conditions import ClassLabels, TensorCondition
    from straightflow.data.tensors import as_data_source
    from straightflow.evaluation import evaluate_run
    from straightflow.hub import from_pretrained, push_to_hub, save_pretrained
    from straightflow.methods.flow_matching import FlowMatching, flow_matching_loss
    from straightflow.methods.mean_flow import MeanFlow, mean_flow_loss
    from straightflow.methods.time_sampling import LogitNormalTime, UniformTime
    from straightflow.models import MLP, DiT, UNet
    from straightflow.models.adapters import FlowModel, as_flow_model
    from straightflow.paths.affine import AffinePath
    from straightflow.paths.coupling import CoupledBatch, ot_coupling, sinkhorn_coupling
    from straightflow.paths.schedule import LinearScheduler, get_scheduler
    from straightflow.runs import Run, load_run, sample_run
    from straightflow.solvers.integrate import odeint
    from straightflow.solvers.likelihood import log_likelihood
    from straightflow.solvers.one_step import average_velocity_sample
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer
