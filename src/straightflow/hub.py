"""Sharing runs: a pretrained folder (save_pretrained / from_pretrained), and the Hugging Face Hub
(push_to_hub / from_pretrained("user/name"), with ``pip install "straightflow[hub]"``).

A pretrained folder is a run folder without its training state, everything sampling needs and no more:

- checkpoint.safetensors: the sampling weights (EMA, unless the run was loaded with weights="model") under the
  "ema." prefix, no raw weights and no optimizer state, with the run's metadata in its header (config, step,
  sample shape, source, condition or class names, the data's fingerprints, normalisation statistics);
- config.json: the same config, for reading;
- README.md: a model card (what it is, how to sample it, what it was trained on).

So :func:`straightflow.runs.load_run` loads a pretrained folder as it loads a run, from any directory, and
:func:`from_pretrained` is load_run for folders and Hub repos alike. Samples of the loaded run equal the
original's for the same seed. Evaluating it needs its data: the recorded path and SHA-256 say which (see
:meth:`straightflow.runs.Run.load_data`), or pass other data deliberately.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from straightflow import __version__
from straightflow.runs import Run, load_run
from straightflow.training.checkpoint import CHECKPOINT, save_checkpoint
from straightflow.training.config import config_to_dict, dumps

__all__ = ["PRETRAINED_FILES", "save_pretrained", "from_pretrained", "push_to_hub", "model_card"]

PRETRAINED_FILES = (CHECKPOINT, "config.json", "README.md")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
_METHOD_NAMES = {"fm": "flow matching", "meanflow": "MeanFlow"}


def save_pretrained(run: Run, folder: str | Path) -> Path:
    """Write `run` as a pretrained folder (see the module doc) into `folder`, created if missing; returns it."""
    folder = Path(folder)
    if folder.resolve() == Path(run.path).resolve():
        raise ValueError(f"{folder} is the run itself; save_pretrained writes a new folder, choose another one")
    meta = {"config": config_to_dict(run.config), "step": run.step, "dim": run.dim, "num_classes": run.num_classes,
            "shape": list(run.shape), **run.meta}
    meta["pretrained"] = {"from_run": str(Path(run.path).resolve()), "weights": run.weights, "version": __version__}
    save_checkpoint(folder / CHECKPOINT, {f"ema.{k}": v for k, v in run.model.state_dict().items()}, meta)
    (folder / "config.json").write_text(dumps(run.config))
    (folder / "README.md").write_text(model_card(run))
    return folder


def _hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("the Hugging Face Hub needs huggingface_hub: pip install 'straightflow[hub]'") from None
    return huggingface_hub


def from_pretrained(
    name: str | Path, device: str = "auto", revision: str | None = None, token: str | None = None,
    model: nn.Module | None = None,
) -> Run:
    """A run from a folder (a pretrained folder or any run folder) or from the Hub repo "user/name" (downloaded
    once into the Hub's cache, `revision` a branch, tag or commit). `model`: the network to load the weights
    into, for a run trained on a network of your own."""
    path = Path(name).expanduser()
    if path.exists():
        return load_run(path, device=device, model=model)
    if not _REPO_ID.fullmatch(str(name)):
        raise ValueError(f"no run folder at {name}, and it is not a Hub repo id of the form user/name")
    local = _hub().snapshot_download(repo_id=str(name), revision=revision, token=token,
                                     allow_patterns=list(PRETRAINED_FILES))
    return load_run(local, device=device, model=model)


def push_to_hub(
    run: Run, repo_id: str, private: bool = False, token: str | None = None, commit_message: str | None = None,
) -> str:
    """Upload `run` as a pretrained folder to the Hub model repo `repo_id` ("user/name"; created if missing).
    Returns the URL of the commit."""
    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"Hub repo id must look like user/name, got {repo_id!r}")
    api = _hub().HfApi(token=token)
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(run, tmp)
        info: Any = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                      commit_message=commit_message or f"straightflow run at step {run.step}")
    return str(getattr(info, "commit_url", info))


def model_card(run: Run) -> str:
    """README.md of a pretrained folder: Hub metadata, then what the run is and how to sample it."""
    cfg = run.config
    method = _METHOD_NAMES.get(cfg.method.name, cfg.method.name)
    if run.average_velocity:
        how, kwargs = "one average-velocity jump (more jumps also work)", {"steps": 1}
    elif cfg.method.time_sampler == "grid":
        k = cfg.method.grid_steps
        how, kwargs = f"{k} Euler step(s), as it was distilled for", {"solver": "euler", "steps": k}
    else:
        how, kwargs = "an ODE solver (dopri5, or a fixed-step solver)", {"solver": "dopri5"}
    flags = " ".join(f"--{k} {v}" for k, v in kwargs.items())
    python = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    data = run.meta.get("data") or {"spec": cfg.data.data}
    trained_on = f"`{data['spec']}`" + (f" (sha256 `{data['sha256']}`)" if "sha256" in data else "")
    classes = f"conditional on {run.num_classes} classes ({', '.join(run.class_names)}); " if run.num_classes else ""
    weights = "EMA" if run.weights == "ema" else "raw"
    return f"""---
library_name: straightflow
tags:
- straightflow
- {"flow-matching" if cfg.method.name == "fm" else cfg.method.name}
- generative-model
---

# {method} run ({Path(run.path).name})

A {method} model trained with straightflow for {run.step} steps on {trained_on}. Samples have shape
{tuple(run.shape)}; the source p0 is `{cfg.data.source}`; {classes}it samples with {how}.

## Sample

```python
from straightflow import from_pretrained, sample_run

run = from_pretrained("THIS_FOLDER_OR_REPO")
x = sample_run(run, 16, {python}).x
```

or `straightflow sample THIS_FOLDER --n 16 {flags}`.

## Files

- `checkpoint.safetensors`: the {weights} weights, without optimizer state; its header holds the run's metadata
  (config, sample shape, source, data fingerprints).
- `config.json`: the run's configuration.

Evaluating the model needs its data: `straightflow eval THIS_FOLDER --data PATH`.
"""
