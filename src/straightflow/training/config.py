"""Run configuration: frozen nested dataclasses, loadable from TOML, overridable field by field.

Only this module and `cli/` read configuration; the library core takes explicit arguments.
Every field below is addressable as "section.field" (e.g. "train.steps", "method.ratio") from a TOML
file, a preset or the command line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DataConfig", "ModelConfig", "MethodConfig", "OptimConfig", "TrainConfig", "RunConfig",
    "PRESETS", "METHOD_DEFAULTS", "apply_overrides", "load_toml", "config_from_dict", "config_from_saved",
    "config_to_dict", "resolve_defaults", "method_defaults_help", "to_toml", "check_config", "device_type",
]

METHODS = ("fm", "meanflow")


@dataclass(frozen=True)
class DataConfig:
    data: str = "moons"  # a toy set name, or a path to a .npy / .csv of shape (N, D)
    source: str = "gaussian"  # "gaussian", or another data set for data-to-data transport
    # auto (METHOD_DEFAULTS) | independent | ot | sinkhorn: the minibatch pairing of x0 with x1
    coupling: str = "auto"
    sinkhorn_epsilon: float = 0.05  # entropic regularisation, relative to the mean cost
    ot_block: int = 0  # exact OT within blocks of this many rows of the batch (0 = the whole batch)
    prefetch: bool = True  # solve the next batch's OT / Sinkhorn coupling in a background thread
    # Images (data = digits | mnist | fashion-mnist | cifar10 | folder:PATH; see data/images.py)
    data_dir: str = ""  # where image files live ("" = $STRAIGHTFLOW_DATA or ./data); nothing is downloaded
    image_size: int = 32  # folder:PATH images are resized and centre-cropped to this side
    conditional: bool = False  # train on class labels (label dropout = method.label_dropout)
    hflip: bool = False  # random horizontal flips of training images
    dequantize: bool = False  # uniform dequantisation of pixel levels (for likelihoods in bits/dim)
    pairs: str = ""  # folder of fixed (x0, x1) pairs (reflow / distillation): batches are its rows, no coupling;
    # data and source still describe the target and source distributions (evaluation, sampling)
    ot_scope: str = "global"  # multi-process: solve minibatch OT on the global batch, or per rank ("rank")
    # auto | on | off: train on per-feature standardised vectors (statistics stored in the run, undone on every
    # sample); auto = on for vector data read from files, off for toy sets and images (data/standardize.py)
    standardize: str = "auto"


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "auto"  # auto (mlp for vectors, unet for images) | mlp | unet | dit
    width: int = 256  # mlp: hidden width; dit: token width
    depth: int = 3  # mlp: hidden layers; dit: transformer blocks
    n_frequencies: int = 16  # Fourier time features per time input
    # mlp: what the network sees of each time input: fourier (n_frequencies sin/cos pairs), raw (the time
    # itself, one number), raw+fourier (both); auto: METHOD_DEFAULTS. unet and dit take fourier only.
    time_features: str = "auto"
    max_frequency: float = 10.0  # mlp: largest angular frequency of the Fourier time features (smallest 1)
    time_inputs: str = "s,t-s"  # what a two-time (MeanFlow) network sees of (s, t)
    # U-Net (models/unet.py)
    channels: int = 0  # base channels of the first level; 0 = auto (METHOD_DEFAULTS: by device)
    # channels per level, as multiples of `channels` (one downsampling per extra level); auto = by device
    channel_mult: str = "auto"
    num_res_blocks: int = 1  # residual blocks per level
    attn_resolutions: str = ""  # side lengths with self-attention, e.g. "16" or "8,4" (the middle always has it)
    dropout: float = 0.0  # unet and dit
    # DiT (models/dit.py)
    patch_size: int = 2  # side of the square patches (must divide the image side)
    heads: int = 4  # attention heads (dit; unet attention uses heads too)


@dataclass(frozen=True)
class MethodConfig:
    name: str = "fm"  # fm | meanflow
    scheduler: str = "linear"  # linear | condot | vp | cosine (the affine path x_t = a_t x1 + s_t x0)
    sigma_min: float = 1e-4  # condot only
    time_sampler: str = "uniform"  # uniform | logit_normal | grid (k-step distillation)
    time_mean: float = 0.0  # logit-normal mean
    time_std: float = 1.0  # logit-normal std
    grid_steps: int = 1  # grid: t uniform on {0, 1/k, ..., (k-1)/k}, k = grid_steps
    label_dropout: float = 0.1  # conditional runs: probability of the null label
    # MeanFlow (ignored by fm)
    ratio: float = -1.0  # fraction of pairs with s != t; -1 = the method's default (METHOD_DEFAULTS)
    # fraction of the s != t pairs set to (s, t) = (0, 1), the one-step sampler's jump; -1 = the method's default
    full_jump: float = -1.0
    weight_power: float = -1.0  # p in w = 1 / (|delta|^2 + c)^p; -1 = the method's default
    weight_eps: float = 1e-3  # c
    jvp: str = "tangent"  # tangent | func | func_nograd | finite_difference
    # the velocity the JVP follows: conditional (the paper's x1 - x0) | model (sg u(x_s, s, s), Improved MeanFlow)
    # | auto (METHOD_DEFAULTS)
    tangent_velocity: str = "auto"
    omega: float = 1.0  # guidance folded into training (with a teacher: the teacher's guidance scale)
    kappa: float = 0.0
    teacher: str = ""  # meanflow: a flow-matching run whose velocity replaces the conditional one in the target
    # with a teacher: eulerian (the MeanFlow identity with the teacher's velocity) | lagrangian (the teacher at
    # the end of the student's jump; docs/meanflow.md)
    teacher_target: str = "eulerian"


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.0  # 0 = the method's default (METHOD_DEFAULTS)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 200
    lr_schedule: str = "cosine"  # cosine | constant (after warm-up)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # EMA of the weights, used for sampling


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 0  # training steps; 0 = the method's default (METHOD_DEFAULTS)
    batch_size: int = 0  # examples per step; 0 = auto (METHOD_DEFAULTS: 256, or 64 for images on a CPU)
    seed: int = 0
    log_every: int = 100
    ckpt_every: int = 1000
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the network
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune
    # torch intra-op threads; 0 = auto: 1 on a CPU for vectors and for images of at most 16x16 pixels, torch's
    # default otherwise
    num_threads: int = 0
    init_from: str = ""  # run folder whose EMA weights start model and EMA (reflow, distillation); not on resume
    # where records go besides RUN/metrics.jsonl (always written): "jsonl", "tensorboard", "wandb", or several
    # joined by commas (training/loggers.py)
    log: str = "jsonl"
    sample_every: int = 0  # steps between sample pictures + a quality number (W2 vs its floor); 0 = off


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Defaults that depend on the method and on the kind of run, kept in this one table. Their fields default to
# "auto" or 0 (see _AUTO_VALUES); resolve_defaults fills them in when a run starts (the Trainer calls it), and
# config.json records the values used. A value given anywhere (preset, TOML, flag, --set) wins.
# The kinds of run: "vectors"; "images-cpu" (images trained on a CPU); "images" (on an accelerator).
# Vectors: chosen by benchmarks/defaults2d.py over 13 toy sets, each run within 3 CPU minutes on one thread
# (docs/benchmarks.md). Images on a CPU: sized so that `train --data digits [--conditional]` reaches its quality
# target within 10 minutes on 2 cores, one thread, beside another process too (benchmarks/digits.py,
# docs/images.md): a 0.19M U-Net at batch 64. Images on an accelerator: the U-Net every image preset started from.
_VECTORS = {"model.channels": 32, "model.channel_mult": "1,2,2", "train.batch_size": 256,  # (no U-Net)
            "method.ratio": 0.5, "method.weight_power": 0.5}
_IMAGES_CPU = {"data.coupling": "independent", "model.time_features": "fourier", "model.channels": 16,
               "model.channel_mult": "1,2", "train.batch_size": 64, "optim.lr": 2e-3, "method.ratio": 0.25,
               "method.weight_power": 1.0}
_IMAGES = {"data.coupling": "independent", "model.time_features": "fourier", "model.channels": 32,
           "model.channel_mult": "1,2,2", "train.batch_size": 256, "train.steps": 5000, "optim.lr": 1e-3,
           "method.ratio": 0.25, "method.weight_power": 1.0}
METHOD_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("fm", "vectors"): {**_VECTORS, "data.coupling": "independent", "model.time_features": "raw",
                        "train.steps": 25000, "optim.lr": 2e-3, "method.tangent_velocity": "conditional",
                        "method.full_jump": 0.0},
    ("meanflow", "vectors"): {**_VECTORS, "data.coupling": "ot", "model.time_features": "raw", "train.steps": 11000,
                              "optim.lr": 2e-3, "method.tangent_velocity": "model", "method.full_jump": 0.25},
    ("fm", "images-cpu"): {**_IMAGES_CPU, "train.steps": 6000, "method.tangent_velocity": "conditional",
                           "method.full_jump": 0.0},
    # Minibatch OT (within classes when conditional) took one-step digits from 1.87-2.27x to 1.35-1.47x the
    # floor unconditional and 0.95x to 0.81x conditional, at no cost per step (docs/images.md); unmeasured on
    # accelerators, where the cost matrix of large images on the host could hold the step up.
    ("meanflow", "images-cpu"): {**_IMAGES_CPU, "data.coupling": "ot", "train.steps": 6000,
                                 "method.tangent_velocity": "model", "method.full_jump": 0.0},
    ("fm", "images"): {**_IMAGES, "method.tangent_velocity": "conditional", "method.full_jump": 0.0},
    ("meanflow", "images"): {**_IMAGES, "method.tangent_velocity": "model", "method.full_jump": 0.0},
}
# The values that mean "the method's default".
_AUTO_VALUES = {"data.coupling": "auto", "model.time_features": "auto", "model.channels": 0,
                "model.channel_mult": "auto", "train.batch_size": 0, "train.steps": 0, "optim.lr": 0.0,
                "method.tangent_velocity": "auto", "method.full_jump": -1.0, "method.ratio": -1.0,
                "method.weight_power": -1.0}


def device_type(spec: str) -> str:
    """"cpu", "cuda", "mps", ... for a train.device setting ("auto": the device pick_device would choose)."""
    if spec != "auto":
        return spec.partition(":")[0]
    from straightflow.training.device import pick_device  # torch loads only when it is needed

    return pick_device("auto").type


def resolve_defaults(cfg: RunConfig, vectors: bool = True, like: RunConfig | None = None,
                     tensor_condition: bool = False, device: str | None = None) -> RunConfig:
    """cfg with every field still at its auto value (_AUTO_VALUES) set from METHOD_DEFAULTS for its method and
    kind of run (vectors; images on the device of type `device`, default: the one train.device picks);
    fields given a value are kept. Fixed pairs (data.pairs, reflow and distillation) are already coupled, and
    minibatch OT would break a tensor condition (paths.coupling.within_classes), so their auto coupling is
    "independent".
    `like` (a resumed run's saved config) supplies the auto fields instead, so that a run made under older
    defaults resumes with the values it was made with."""
    if cfg.method.name not in METHODS:
        raise ValueError(f"unknown method {cfg.method.name!r}; choose from: {', '.join(METHODS)}")
    if vectors:
        kind = "vectors"
    else:
        kind = "images-cpu" if (device or device_type(cfg.train.device)) == "cpu" else "images"
    table = METHOD_DEFAULTS[(cfg.method.name, kind)]
    if cfg.data.pairs or tensor_condition:  # pairs are coupled already; OT cannot respect a tensor condition
        table = {**table, "data.coupling": "independent"}
    if like is not None:  # (a saved config holds resolved values; one still at auto takes today's default)
        saved = {key: getattr(getattr(like, key.partition(".")[0]), key.partition(".")[2]) for key in _AUTO_VALUES}
        table = {key: table[key] if value == _AUTO_VALUES[key] else value for key, value in saved.items()}
    changes = {}
    for key, auto in _AUTO_VALUES.items():
        section, _, name = key.partition(".")
        if getattr(getattr(cfg, section), name) == auto:
            changes[key] = table[key]
    return apply_overrides(cfg, changes)


def method_defaults_help(key: str) -> str:
    """'ot (meanflow, vectors), independent (fm, vectors), ...'-style text for --help, from METHOD_DEFAULTS."""
    parts = [f"{v[key]} ({method}, {kind})" for (method, kind), v in METHOD_DEFAULTS.items()]
    return "default by method and data: " + ", ".join(parts)


# Named presets: dotted overrides applied over the defaults (then TOML, then flags).
PRESETS: dict[str, dict[str, Any]] = {
    "toy2d-fm": {},
    # Our tuned 2-D MeanFlow defaults (benchmarks/meanflow2d.py).
    # Minibatch-OT pairs won on every set (checkerboard at 15k steps: 1.30x the W2 floor at 1 NFE against 1.71x
    # with independent pairs); the paper's ImageNet settings (25% s != t, p = 1) did worse in 2-D.
    "toy2d-meanflow": {
        "method.name": "meanflow", "method.ratio": 0.5, "method.weight_power": 0.5,
        "method.weight_eps": 1e-3, "data.coupling": "ot", "train.steps": 20000, "optim.ema_decay": 0.999,
        "model.time_features": "fourier",  # what its tables were measured with (the plain default is now raw)
    },
    # MeanFlow paper (Geng et al. 2025), ImageNet 256 settings, written in our convention: the paper's time runs
    # the other way, so its logit-normal(-0.4, 1) is logit-normal(+0.4, 1) here; it sums the squared error over
    # the D dimensions where we average, so its c becomes c / D (D = 32x32x4 latents for ImageNet, 3x32x32 for
    # CIFAR-10).
    "meanflow-imagenet": {
        "method.name": "meanflow", "method.ratio": 0.25, "method.time_sampler": "logit_normal",
        "method.time_mean": 0.4, "method.time_std": 1.0, "method.weight_power": 1.0,
        "method.weight_eps": 1e-2 / 4096, "method.omega": 1.0, "method.kappa": 0.5, "method.label_dropout": 0.1,
    },
    # MeanFlow paper, CIFAR-10 (unconditional) settings.
    "meanflow-cifar10": {
        "method.name": "meanflow", "method.ratio": 0.75, "method.time_sampler": "logit_normal",
        "method.time_mean": 2.0, "method.time_std": 2.0, "method.weight_power": 0.75,
        "method.weight_eps": 1e-3 / 3072,
    },
    # GPU recipes for CIFAR-10 (32x32, needs --data-dir with the python batches). Architecture and optimiser
    # follow each paper's CIFAR-10 setup as closely as our U-Net allows; NOT yet reproduced by us (docs/scaling.md
    # lists the papers' numbers these should be compared with).
    "fm-cifar10-gpu": {
        "data.data": "cifar10", "data.hflip": True, "model.arch": "unet", "model.channels": 128,
        "model.channel_mult": "1,2,2,2", "model.num_res_blocks": 2, "model.attn_resolutions": "16",
        "model.dropout": 0.1, "method.name": "fm", "method.scheduler": "condot", "optim.lr": 5e-4,
        "optim.warmup_steps": 5000, "optim.lr_schedule": "constant", "optim.ema_decay": 0.9999,
        "train.batch_size": 128, "train.steps": 400000, "train.precision": "bf16", "train.log_every": 1000,
        "train.ckpt_every": 10000,
    },
    "rf-cifar10-gpu": {
        "data.data": "cifar10", "data.hflip": True, "model.arch": "unet", "model.channels": 128,
        "model.channel_mult": "1,2,2,2", "model.num_res_blocks": 4, "model.attn_resolutions": "16",
        "model.dropout": 0.15, "method.name": "fm", "method.scheduler": "linear", "optim.lr": 2e-4,
        "optim.warmup_steps": 5000, "optim.lr_schedule": "constant", "optim.ema_decay": 0.9999,
        "train.batch_size": 128, "train.steps": 800000, "train.precision": "bf16", "train.log_every": 1000,
        "train.ckpt_every": 10000,
    },
    "meanflow-cifar10-gpu": {
        "data.data": "cifar10", "data.hflip": True, "model.arch": "unet", "model.channels": 128,
        "model.channel_mult": "2,2,2", "model.num_res_blocks": 4, "model.attn_resolutions": "16",
        "model.dropout": 0.0, "method.name": "meanflow", "method.ratio": 0.75, "method.time_sampler": "logit_normal",
        "method.time_mean": 2.0, "method.time_std": 2.0, "method.weight_power": 0.75, "method.weight_eps": 1e-3 / 3072,
        "method.jvp": "tangent", "optim.lr": 6e-4, "optim.warmup_steps": 10000, "optim.lr_schedule": "constant",
        "optim.ema_decay": 0.9999, "train.batch_size": 1024, "train.steps": 800000, "train.precision": "bf16",
        "train.log_every": 1000, "train.ckpt_every": 10000,
    },
}

_SECTIONS = {f.name: f.type for f in fields(RunConfig)}


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Turn a TOML or command-line value into the type of the field's current value."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} takes true/false, got {value!r}")
    try:
        return type(current)(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} takes a {type(current).__name__}, got {value!r}") from None


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return cfg with dotted keys ("train.steps": 100) replaced; unknown keys are an error."""
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        sub = getattr(cfg, section, None) if section in _SECTIONS else None
        if sub is None or name not in {f.name for f in fields(sub)}:
            known = ", ".join(f"{s}.{f.name}" for s in _SECTIONS for f in fields(getattr(cfg, s)))
            raise ValueError(f"unknown config key {key!r}; known keys: {known}")
        cfg = replace(cfg, **{section: replace(sub, **{name: _coerce(value, getattr(sub, name), key)})})
    return cfg


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 5}} -> {"train.steps": 5}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_from_dict(d: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Nested {"train": {"steps": 10}} (as in TOML or config.json) -> RunConfig."""
    return apply_overrides(base or RunConfig(), flatten_config(d))


# Fields added after runs were first saved, with the value that runs saved without them were made with: a
# saved config.json that lacks one is read with this value, not the current default (old checkpoints load).
_SAVED_BEFORE: dict[str, Any] = {"model.max_frequency": 10.0, "model.time_features": "fourier",
                                 "data.standardize": "off", "method.tangent_velocity": "conditional",
                                 "method.full_jump": 0.0}


def config_from_saved(d: dict[str, Any]) -> RunConfig:
    """A run's saved config (checkpoint metadata / config.json) -> RunConfig; fields the run predates take
    their value from before they existed (_SAVED_BEFORE)."""
    flat = flatten_config(d)
    return apply_overrides(RunConfig(), {**{k: v for k, v in _SAVED_BEFORE.items() if k not in flat}, **flat})


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_toml(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}") from None
    return config_from_dict(d, base)


def dumps(cfg: RunConfig) -> str:
    return json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)


def to_toml(cfg: RunConfig) -> str:
    """cfg as a TOML document with one table per section, readable back by :func:`load_toml`."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        return repr(v)

    blocks = []
    for section, fields_ in config_to_dict(cfg).items():
        blocks.append(f"[{section}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in fields_.items()))
    return "\n".join(blocks)


# (field, lowest allowed value, whether the bound itself is allowed, what the value means)
_BOUNDS = (
    ("train.steps", 0, True, "training steps; 0 = the method's default"),
    ("train.batch_size", 0, True, "examples per step; 0 = the default for the run's kind"),
    ("train.log_every", 1, True, "steps between log lines"),
    ("train.ckpt_every", 1, True, "steps between checkpoints"),
    ("train.num_threads", 0, True, "torch threads; 0 = auto"),
    ("train.sample_every", 0, True, "steps between sample pictures; 0 = off"),
    ("data.ot_block", 0, True, "rows per exact-OT block; 0 = the whole batch"),
    ("optim.lr", 0.0, True, "learning rate; 0 = the method's default"),
    ("optim.warmup_steps", 0, True, "warm-up steps"),
    ("optim.grad_clip", 0.0, True, "max gradient norm; 0 = off"),
    ("optim.weight_decay", 0.0, True, "weight decay"),
)


def check_config(cfg: RunConfig) -> RunConfig:
    """cfg itself if every numeric field lies in its range, else a one-line ValueError naming the field, the
    value and what is allowed: bad settings are refused before any work starts."""
    for key, low, inclusive, meaning in _BOUNDS:
        section, _, name = key.partition(".")
        value = getattr(getattr(cfg, section), name)
        if not (value >= low if inclusive else value > low):  # also catches NaN
            raise ValueError(f"{key} must be {'>=' if inclusive else '>'} {low} ({meaning}), got {value!r}")
    if cfg.data.standardize not in ("auto", "on", "off"):
        raise ValueError(f"data.standardize must be auto, on or off, got {cfg.data.standardize!r}")
    if not 0.0 <= cfg.optim.ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay must lie in [0, 1), got {cfg.optim.ema_decay!r}")
    return cfg
