"""Where a run's numbers and pictures go while it trains: JSONL files (always), TensorBoard, Weights & Biases.

A logger receives scalars and images by step, in a named group:

- group "train" (every train.log_every steps): loss, lr, grad_norm, steps_per_s, examples_per_s and the
  method's extra terms (MeanFlow: loss_unweighted), each averaged over the steps since the last record;
- group "quality" (every train.sample_every steps): a cheap sample-quality figure (2-D and vector data: W2 of
  EMA samples against held-out data, beside its floor) and the picture "samples" (a scatter or an image grid).

Backends (train.log = "jsonl", "tensorboard", "wandb", or several joined by commas; jsonl is always on):

- jsonl: group "train" appends one JSON object per line to RUN/metrics.jsonl ({"step": k, "loss": ..., "lr":
  ...}), other groups to RUN/<group>.jsonl; images are PNG files RUN/snapshots/<name>_<step>.png;
- tensorboard: torch.utils.tensorboard event files in RUN/tensorboard, tags "<group>/<name>" (needs
  `pip install 'straightflow[tensorboard]'`);
- wandb: one Weights & Biases run in RUN/wandb, named after the folder, with the run's configuration; the mode
  comes from $WANDB_MODE ("offline" writes locally, `wandb sync` uploads later), the project from
  $WANDB_PROJECT (default "straightflow") (needs `pip install 'straightflow[wandb]'`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["read_jsonl",
    "LOG_BACKENDS", "RunLogger", "JsonlLogger", "TensorBoardLogger", "WandbLogger", "MultiLogger",
    "parse_log_spec", "check_log_spec", "open_loggers", "figure_to_array", "truncate_jsonl",
]

LOG_BACKENDS = ("jsonl", "tensorboard", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # backend -> module it needs
TRAIN_FILE = "metrics.jsonl"
SNAPSHOTS = "snapshots"


class RunLogger(Protocol):
    """What the trainer calls. values: name -> float; image: (H, W, 3|4) array (uint8, or float in [0, 1])
    or a matplotlib Figure."""

    def log_scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None: ...

    def log_image(self, step: int, name: str, image: Any, group: str = "quality") -> None: ...

    def close(self) -> None: ...


def parse_log_spec(spec: str) -> list[str]:
    """'tensorboard,wandb' -> ['jsonl', 'tensorboard', 'wandb']: jsonl first and always, no repeats."""
    names = [s.strip().lower() for s in str(spec).split(",") if s.strip()]
    bad = [s for s in names if s not in LOG_BACKENDS]
    if bad:
        raise ValueError(f"unknown train.log backend {bad[0]!r}; choose from: {', '.join(LOG_BACKENDS)} "
                         "(several joined by commas)")
    return list(dict.fromkeys(["jsonl", *names]))


def check_log_spec(spec: str) -> list[str]:
    """The backends of `spec`, after checking each one's package is installed: a one-line ValueError naming
    the pip extra otherwise (raised before training starts, not after the first log_every steps)."""
    names = parse_log_spec(spec)
    for name in names:
        module = _PACKAGES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise ValueError(f"train.log {name!r} needs the {module} package: pip install 'straightflow[{name}]'")
    return names


def figure_to_array(image: Any) -> np.ndarray:
    """An image as (H, W, 3) uint8: a matplotlib Figure is drawn (Agg, no pyplot); arrays (H, W), (H, W, 1|3|4)
    in [0, 1] (float) or [0, 255] (uint8) are converted."""
    from matplotlib.figure import Figure

    if isinstance(image, Figure):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(image)
        canvas.draw()
        array = np.asarray(canvas.buffer_rgba())
    else:
        array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-empty line; [] when the file is missing."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of a JSONL log with "step" <= step (a resumed run writes the later ones again); a line a
    kill cut short (not a JSON record with a step) is dropped too."""
    def step_of(line: str) -> float:
        try:
            record = json.loads(line)
            return float(record["step"])
        except (ValueError, TypeError, KeyError):
            return float("inf")

    if path.exists():
        keep = [ln for ln in path.read_text(errors="replace").splitlines() if ln and step_of(ln) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


class JsonlLogger:
    """RUN/metrics.jsonl for group "train", RUN/<group>.jsonl for the others, PNGs in RUN/snapshots."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def path(self, group: str) -> Path:
        return self.out / (TRAIN_FILE if group == "train" else f"{group}.jsonl")

    def log_scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None:
        with open(self.path(group), "a") as f:
            f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in values.items()}}) + "\n")

    def log_image(self, step: int, name: str, image: Any, group: str = "quality") -> None:
        from PIL import Image

        folder = self.out / SNAPSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(figure_to_array(image)).save(folder / f"{name}_{int(step):07d}.png")

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in RUN/tensorboard (torch.utils.tensorboard.SummaryWriter), tags '<group>/<name>'."""

    def __init__(self, out: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out) / "tensorboard"))

    def log_scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{group}/{k}", float(v), int(step))

    def log_image(self, step: int, name: str, image: Any, group: str = "quality") -> None:
        self.writer.add_image(f"{group}/{name}", figure_to_array(image), int(step), dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbLogger:
    """One Weights & Biases run in RUN/wandb; mode from $WANDB_MODE, project from $WANDB_PROJECT."""

    def __init__(self, out: str | Path, config: Mapping[str, Any] | None = None) -> None:
        import wandb

        self.wandb = wandb
        out = Path(out)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "straightflow"), dir=str(out),
                              name=out.resolve().name, config=dict(config or {}))

    def log_scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None:
        self.run.log({f"{group}/{k}": float(v) for k, v in values.items()}, step=int(step))

    def log_image(self, step: int, name: str, image: Any, group: str = "quality") -> None:
        self.run.log({f"{group}/{name}": self.wandb.Image(figure_to_array(image))}, step=int(step))

    def close(self) -> None:
        self.run.finish()


class MultiLogger:
    """Sends every call to each of `loggers`, in order."""

    def __init__(self, loggers: Sequence[RunLogger]) -> None:
        self.loggers = list(loggers)

    def log_scalars(self, step: int, values: Mapping[str, float], group: str = "train") -> None:
        for logger in self.loggers:
            logger.log_scalars(step, values, group)

    def log_image(self, step: int, name: str, image: Any, group: str = "quality") -> None:
        for logger in self.loggers:
            logger.log_image(step, name, image, group)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_loggers(spec: str, out: str | Path, config: Mapping[str, Any] | None = None) -> MultiLogger:
    """The loggers `spec` names (see the module doc), writing into the run folder `out`."""
    made: list[RunLogger] = []
    for name in check_log_spec(spec):
        if name == "jsonl":
            made.append(JsonlLogger(out))
        elif name == "tensorboard":
            made.append(TensorBoardLogger(out))
        else:
            made.append(WandbLogger(out, config))
    return MultiLogger(made)
