"""From a RunConfig to the objects the library core takes: data, source, coupling, method, model."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from straightflow.conditions import Condition, condition_from_meta
from straightflow.data.source import resolve_data, resolve_source
from straightflow.methods.flow_matching import FlowMatching
from straightflow.methods.time_sampling import get_time_sampler
from straightflow.models.adapters import as_flow_model
from straightflow.models.mlp import MLP
from straightflow.paths.affine import AffinePath
from straightflow.paths.coupling import get_coupling
from straightflow.paths.schedule import get_scheduler
from straightflow.training.checkpoint import checkpoint_file, load_checkpoint, load_state_strict
from straightflow.training.config import METHODS, RunConfig, config_from_saved, resolve_defaults

__all__ = [
    "build_data", "build_target", "build_source", "build_model", "build_method", "build_teacher", "build_coupling",
    "build_pairs", "num_classes_of", "load_network",
]


# data.data / model.arch of a run given data or a network of the user's own (Trainer(data=..., model=...)).
OWN_DATA_PREFIX, OWN_MODEL_ARCH = "python:", "custom"


def own_pieces(cfg: RunConfig, model: nn.Module | None = None, data=None, source=None) -> RunConfig:
    """cfg recording that the run's network, data or source are the user's own (model.arch "custom"; data.data
    and data.source "python:NAME"), so that config.json says what the run was made of, and loading asks for
    the network and sampling for the source's points (sample_run(x0=...))."""
    if model is not None:
        cfg = replace(cfg, model=replace(cfg.model, arch=OWN_MODEL_ARCH))
    for field_, given in (("data", data), ("source", source)):
        if given is not None:
            name = getattr(given, "name", None) or type(given).__name__
            cfg = replace(cfg, data=replace(cfg.data, **{field_: f"{OWN_DATA_PREFIX}{name}"}))
    return cfg


def build_data(cfg: RunConfig, data=None, source=None):
    """(target data source, source distribution): both with .sample(n, generator) and .shape.

    data / source: your own (see straightflow.data.tensors.as_data_source) in place of cfg.data.data /
    cfg.data.source."""
    from straightflow.data.tensors import as_data_source

    if data is not None:
        data = as_data_source(data)
    elif cfg.data.data.startswith(OWN_DATA_PREFIX):
        raise ValueError(f"run data '{cfg.data.data}' were given in Python; pass them again (data=...) or use "
                         "--data")
    else:
        data = build_target(cfg)
    if source is not None:
        source = as_data_source(source)
        if source.dim != data.dim:
            raise ValueError(f"the source has samples of shape {source.shape} but the data {data.shape}")
        return data, source
    return data, build_source(cfg, data.shape)


def build_source(cfg: RunConfig, shape):
    """The source p0 of cfg (data.source) for samples of `shape`: N(0, I), or a data set; an image set as
    source (image-to-image translation) is read with the data's image options (data_dir, image_size, hflip)."""
    d = cfg.data
    if d.source.startswith(OWN_DATA_PREFIX):
        raise ValueError(f"this run's source '{d.source}' was given in Python; pass its points to sample from "
                         "(sample_run(..., x0=...)) or the source again (source=...)")
    return resolve_source(d.source, shape, data_dir=d.data_dir, image_size=d.image_size, hflip=d.hflip)


def build_target(cfg: RunConfig, spec: str | None = None):
    """The target data set of cfg (data.data), or the data `spec` read with cfg's image options (data_dir,
    image_size, conditional, hflip, dequantize)."""
    d = cfg.data
    spec = d.data if spec is None else spec
    data = resolve_data(spec, data_dir=d.data_dir, image_size=d.image_size, conditional=d.conditional,
                        hflip=d.hflip, dequantize=d.dequantize)
    if d.conditional and not num_classes_of(data):
        raise ValueError(f"data.conditional needs labelled data, and '{spec}' has no class labels")
    return data


def num_classes_of(data) -> int:
    return int(getattr(data, "num_classes", 0) or 0)


def build_pairs(cfg: RunConfig, data, num_classes: int = 0):
    """The fixed coupling of a reflow / distillation run (data.pairs), or None: a PairSource whose rows
    must have the data's dimension and carry labels exactly when the data are labelled."""
    if not cfg.data.pairs:
        return None
    from straightflow.data.pairs import PairSource

    if cfg.data.coupling != "independent":
        raise ValueError(f"data.pairs are already coupled; data.coupling must be 'independent', "
                         f"got {cfg.data.coupling!r}")
    pairs = PairSource.from_folder(cfg.data.pairs)
    if pairs.shape != tuple(data.shape):
        raise ValueError(f"pairs in {cfg.data.pairs} have sample shape {pairs.shape} but the data {tuple(data.shape)}")
    if (pairs.label is not None) != (num_classes > 0):
        have = "labelled" if pairs.label is not None else "unlabelled"
        raise ValueError(f"pairs in {cfg.data.pairs} are {have} but the run has {num_classes} classes")
    return pairs


def build_coupling(cfg: RunConfig):
    kw = {"sinkhorn": {"epsilon": cfg.data.sinkhorn_epsilon},
          "ot": {"block_size": cfg.data.ot_block}}.get(cfg.data.coupling, {})
    return get_coupling(cfg.data.coupling, **kw)


def build_model(cfg: RunConfig, shape: int | tuple[int, ...], num_classes: int | Condition | None = 0) -> nn.Module:
    """The network for samples of `shape` (an int: vectors of that many entries): an MLP for vectors, a U-Net
    or DiT for images (C, H, W) (arch "auto": unet for images, mlp otherwise). num_classes: K class labels or
    a straightflow.conditions Condition."""
    if cfg.model.arch == OWN_MODEL_ARCH:
        raise ValueError("this run's network is your own (model.arch custom): pass the module again, e.g. "
                         "load_run(path, model=MyNet(...))")
    if cfg.model.arch not in ("auto", "mlp", "unet", "dit"):
        raise ValueError(f"unknown model arch {cfg.model.arch!r}; choose from: auto, mlp, unet, dit")
    from straightflow.data.images import image_shape, is_image_spec

    shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
    dim = math.prod(shape)
    num_classes = num_classes or 0
    images = len(shape) == 3 or is_image_spec(cfg.data.data)
    m = resolve_defaults(cfg, vectors=not images).model  # model.time_features "auto" -> the method's default
    n_times = 2 if cfg.method.name == "meanflow" else 1
    arch = ("unet" if images else "mlp") if m.arch == "auto" else m.arch
    if arch == "mlp":
        if images:
            raise ValueError(f"model.arch=mlp takes vectors, and '{cfg.data.data}' holds images; use unet or dit")
        return MLP(dim, m.width, m.depth, n_times, m.time_inputs, m.n_frequencies, num_classes, m.max_frequency,
                   m.time_features)
    if not images:
        raise ValueError(f"model.arch={arch} takes images, and '{cfg.data.data}' holds vectors; use mlp")
    if m.time_features != "fourier":
        raise ValueError(f"model.time_features={m.time_features} is for the mlp; {arch} takes fourier")
    from straightflow.models.dit import DiT
    from straightflow.models.unet import UNet, parse_int_tuple

    if len(shape) != 3:  # an old run's metadata hold the dimension alone
        shape = image_shape(cfg.data.data, cfg.data.image_size)
    if math.prod(shape) != dim:
        raise ValueError(f"images of shape {shape} have {math.prod(shape)} entries, but the data have {dim}")
    if arch == "unet":
        return UNet(shape, m.channels, parse_int_tuple(m.channel_mult, "model.channel_mult"), m.num_res_blocks,
                    parse_int_tuple(m.attn_resolutions, "model.attn_resolutions"), m.dropout, n_times,
                    m.time_inputs, m.n_frequencies, num_classes, m.heads)
    return DiT(shape, m.width, m.depth, m.heads, m.patch_size, dropout=m.dropout, n_times=n_times,
               time_inputs=m.time_inputs, n_frequencies=m.n_frequencies, num_classes=num_classes)


def _time_sampler(cfg: RunConfig):
    kw = {"mean": cfg.method.time_mean, "std": cfg.method.time_std} if cfg.method.time_sampler == "logit_normal" else {}
    if cfg.method.time_sampler == "grid":
        kw = {"steps": cfg.method.grid_steps}
    return get_time_sampler(cfg.method.time_sampler, **kw)


def load_network(run: str | Path, weights: str = "ema", model: nn.Module | None = None
                 ) -> tuple[nn.Module, RunConfig, dict[str, Any], Path]:
    """(network in eval mode without gradients, on the CPU; its run's config; the checkpoint's metadata; the
    checkpoint file) for a run folder or checkpoint file, with its EMA ("ema") or raw ("model") weights.

    model: the module of a run trained on a network of your own (model.arch custom), weights loaded into it."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    ckpt = checkpoint_file(run)
    tensors, meta = load_checkpoint(ckpt)
    cfg = config_from_saved(meta["config"])
    condition = condition_from_meta(meta.get("condition"), int(meta.get("num_classes", 0)))
    if model is None:
        model = build_model(cfg, meta.get("shape") or int(meta["dim"]), condition or 0)
    else:
        model = as_flow_model(model, 2 if cfg.method.name == "meanflow" else 1, condition is not None)
    load_state_strict(model, tensors, f"{weights}.", str(ckpt))
    return model.eval().requires_grad_(False), cfg, meta, ckpt


def build_teacher(cfg: RunConfig, dim: int, num_classes: int, device) -> nn.Module | None:
    """The frozen velocity network (EMA weights) of the run in method.teacher, on `device`; None without one.

    It must be a flow-matching run on data of the same dimension and classes, and the method MeanFlow."""
    if not cfg.method.teacher:
        return None
    if cfg.method.name != "meanflow":
        raise ValueError(f"method.teacher is for method meanflow (teacher distillation), not {cfg.method.name!r}")
    teacher, teacher_cfg, meta, _ = load_network(cfg.method.teacher)
    path = cfg.method.teacher
    if teacher_cfg.method.name != "fm":
        raise ValueError(f"method.teacher must be a flow-matching (velocity) run; {path} is a "
                         f"{teacher_cfg.method.name} run")
    if (int(meta["dim"]), int(meta.get("num_classes", 0))) != (dim, num_classes):
        raise ValueError(f"method.teacher {path} has data of dimension {meta['dim']} with "
                         f"{meta.get('num_classes', 0)} classes; this run has {dim} with {num_classes}")
    return teacher.to(device)


def build_method(cfg: RunConfig, num_classes: int = 0, teacher: nn.Module | None = None):
    """The training objective: an object with .loss(model, batch, generator) -> LossOutput; `teacher` (see
    build_teacher) for MeanFlow teacher distillation."""
    if cfg.method.name not in METHODS:
        raise ValueError(f"unknown method {cfg.method.name!r}; choose from: {', '.join(METHODS)}")
    from straightflow.data.images import is_image_spec

    # The Trainer resolves the auto fields; a bare config takes the defaults for its kind of data (resolving
    # a resolved config changes nothing).
    me = resolve_defaults(cfg, vectors=not is_image_spec(cfg.data.data)).method
    kw = {"sigma_min": me.sigma_min} if me.scheduler == "condot" else {}
    path = AffinePath(get_scheduler(me.scheduler, **kw))
    if me.name == "fm":
        return FlowMatching(path, _time_sampler(cfg), num_classes, me.label_dropout if num_classes else 0.0)
    from straightflow.methods.mean_flow import MeanFlow

    return MeanFlow(
        path, _time_sampler(cfg), num_classes=num_classes,
        label_dropout=me.label_dropout if num_classes else 0.0, ratio=me.ratio,
        full_jump=me.full_jump, weight_power=me.weight_power, weight_eps=me.weight_eps, jvp=me.jvp,
        omega=me.omega, kappa=me.kappa,
        tangent_velocity=me.tangent_velocity, teacher=teacher, teacher_target=me.teacher_target,
    )
