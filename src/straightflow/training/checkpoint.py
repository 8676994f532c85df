"""Checkpoints: tensors in one safetensors file, everything else as JSON in its metadata; never pickle.

The file is written to a temporary name in the same folder and renamed over the old one (atomic on POSIX),
so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT", "checkpoint_file", "save_checkpoint", "load_checkpoint", "load_state_strict", "optimizer_tensors",
    "load_optimizer",
]

CHECKPOINT = "checkpoint.safetensors"  # a run folder's checkpoint


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint of a run: RUN/checkpoint.safetensors for a run folder, the path itself for a file."""
    path = Path(run)
    return path / CHECKPOINT if path.is_dir() else path


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write tensors + JSON-able meta to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(flat, str(tmp), metadata={"straightflow": json.dumps(meta)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) from a checkpoint; a missing, truncated or foreign file is a one-line ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("straightflow")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    if raw is None:
        raise ValueError(f"checkpoint {path} was not written by straightflow (no metadata)")
    return tensors, json.loads(raw)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_state_strict(module: nn.Module, tensors: dict[str, Tensor], prefix: str, where: str) -> None:
    """Load `prefix`-ed tensors into module; names or shapes that differ are a clear error."""
    state = _prefixed(tensors, prefix)
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or bad:
        detail = "; ".join(
            s for s in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                f"shape of {bad[0]}: checkpoint {tuple(state[bad[0]].shape)} vs model {tuple(own[bad[0]].shape)}"
                if bad else "",
            ) if s
        )
        raise ValueError(f"checkpoint {where} does not fit this model configuration: {detail}")
    module.load_state_dict(state)


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Flatten an optimizer's per-parameter state into "optim.<index>.<name>" tensors."""
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for name, val in st.items():
            out[f"optim.{idx}.{name}"] = val if torch.is_tensor(val) else torch.tensor(val)
    return out


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    """Inverse of :func:`optimizer_tensors` (hyper-parameters come from the current optimizer)."""
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, val in _prefixed(tensors, "optim.").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    sd["state"] = state
    opt.load_state_dict(sd)
