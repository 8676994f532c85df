"""Checkpoints: tensors in one safetensors file, everything else as JSON in its metadata; never pickle.

The file is written to a temporary name in the same folder and renamed over the old one (atomic on POSIX),
so a kill during a save leaves the previous checkpoint intact; a failed write (a full disk, an I/O error)
removes its temporary file and raises an OSError naming the checkpoint, and the temporaries a kill leaves
behind are removed by :func:`clean_temporaries` when the next writer starts. Files get the permissions the
umask allows (0644 under the usual 022), like any other file the run writes.
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
    "CHECKPOINT", "checkpoint_file", "save_checkpoint", "load_checkpoint", "read_meta", "load_state_strict",
    "optimizer_tensors", "load_optimizer", "clean_temporaries", "write_text_atomic",
]

CHECKPOINT = "checkpoint.safetensors"  # a run folder's checkpoint


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint of a run: RUN/checkpoint.safetensors for a run folder, the path itself for a file."""
    path = Path(run)
    return path / CHECKPOINT if path.is_dir() else path


def _umask() -> int:
    """The process umask (from /proc on Linux, where reading it changes nothing; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write tensors + JSON-able meta to `path` atomically (temp file, fsync, rename).

    On an OSError (ENOSPC, EIO, ...) the temporary file is removed, the file at `path` is left as it was and
    the error is re-raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        save_file(flat, str(tmp), metadata={"straightflow": json.dumps(meta)})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates files 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        tmp.unlink(missing_ok=True)
        reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e) or "error").splitlines()[0]
        err = OSError(f"cannot write {path}: {reason}")
        err.errno = getattr(e, "errno", None)
        raise err from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old or the new file."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files (.NAME.tmp-PID) that writers killed mid-save left in `folder`; call it only
    while holding the folder's lock (training.lock), so no live writer's file is taken. Returns them."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def load_checkpoint(path: str | Path, kind: str = "run") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) from a checkpoint; a missing, truncated or foreign file is a one-line ValueError, and so
    is broken metadata: not JSON, or (kind "run", a run's checkpoint) without its config and step."""
    meta = read_meta(path, kind)  # a missing or foreign file fails here, before any tensor is read
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    return tensors, meta


def _parse_meta(raw: str | None, path: Path, kind: str = "run") -> dict[str, Any]:
    if raw is None:
        raise ValueError(f"checkpoint {path} was not written by straightflow (no metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint {path} has broken JSON in its metadata ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {path} has metadata that is not a JSON object")
    if kind == "run" and not (isinstance(meta.get("config"), dict) and isinstance(meta.get("step"), int)):
        raise ValueError(f"checkpoint {path} is not a run's checkpoint: its metadata lack a config and a step")
    return meta


def read_meta(path: str | Path, kind: str = "run") -> dict[str, Any]:
    """A checkpoint's metadata alone (no tensors are read); errors as :func:`load_checkpoint`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("straightflow")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    return _parse_meta(raw, path, kind)


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
