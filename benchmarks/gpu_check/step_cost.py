"""Section 1 of the GPU check, training-step cost; and the step function and timer that
`benchmarks/jvp_cost.py` shares with it.

prepare_step builds one training step for any RunConfig (network, method, batch size), device and precision,
on a synthetic batch already on the device; time_steps times it. step_rows runs the GPU check's rows.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpu_check.context import COST, Ctx, last_line

STEP_NAMES = {"fm": "flow matching", "tangent": "MeanFlow tangent", "func": "MeanFlow func",
              "func_nograd": "MeanFlow func_nograd", "finite_difference": "MeanFlow finite_difference"}
MODES = tuple(STEP_NAMES)
DIT = {"model.arch": "dit", "model.width": 384, "model.depth": 12, "model.heads": 6, "model.patch_size": 2}
TINY_UNET = {"model.channels": 8, "model.channel_mult": "2,2", "model.num_res_blocks": 1}  # attention at 16 kept
TINY_DIT = {"model.width": 32, "model.depth": 2, "model.heads": 2}
TIME_TARGET, MEMORY_TARGET = 1.5, 1.3


def method_overrides(mode: str) -> dict:
    """The config keys of a step mode: "fm", or a MeanFlow method.jvp."""
    return {"method.name": "fm"} if mode == "fm" else {"method.name": "meanflow", "method.jvp": mode}


# ------------------------------------------------------------------------------ the shared step and timer
@dataclass
class Prepared:
    """One training step, built: a function that runs it, its batch size, the network's size and device."""

    step: Callable[[], None]
    batch_size: int
    params: int
    device: torch.device

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare_step(cfg, device: torch.device, precision: str = "fp32", num_classes: int = 0,
                 compile_backend: str | None = None) -> Prepared:
    """Model, AdamW, method and a synthetic batch on `device`; one step = method.loss + backward + AdamW step
    (no clipping, no EMA), under `precision` autocast.

    The network and method come from `cfg` through build_model / build_method (with `num_classes` classes:
    random labels in the batch), the image shape from cfg.data (image_shape: an image data set, or
    folder:ANY at data.image_size without reading it), the batch size from cfg.train.batch_size. Channels-last
    on CUDA (as the Trainer does for images); torch.compile(dynamic=False) with `compile_backend` if given.
    Nothing runs yet: warm up with prepared.run(n)."""
    from straightflow.data.images import image_shape
    from straightflow.paths.coupling import CoupledBatch
    from straightflow.training.build import build_method, build_model
    from straightflow.training.device import autocast

    shape = image_shape(cfg.data.data, cfg.data.image_size)
    torch.manual_seed(0)
    with torch.device(device):  # parameters made on the device: a 57M-parameter init on the CPU is slow
        model = build_model(cfg, math.prod(shape), num_classes).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    o = cfg.optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    method = build_method(cfg, num_classes)
    net = torch.compile(model, backend=compile_backend, dynamic=False) if compile_backend else model
    g = torch.Generator(device).manual_seed(0)
    b = cfg.train.batch_size
    batch = CoupledBatch(torch.randn(b, *shape, device=device, generator=g),
                         torch.rand(b, *shape, device=device, generator=g) * 2 - 1,
                         torch.randint(num_classes, (b,), device=device, generator=g) if num_classes else None)

    def step() -> None:
        with autocast(device, precision):
            out = method.loss(net, batch, g)
        loss = out.loss.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return Prepared(step, b, sum(p.numel() for p in model.parameters()), device)


def time_steps(prep: Prepared, steps: int) -> dict:
    """Mean ms per step over `steps` steps (CUDA events on CUDA, the wall clock elsewhere), images/s, and the
    peak device memory over them in GiB (None off CUDA)."""
    device = prep.device
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        prep.run(steps)
        end.record()
        torch.cuda.synchronize(device)
        ms, peak = start.elapsed_time(end) / steps, torch.cuda.max_memory_allocated(device) / 2**30
    else:
        t0 = time.perf_counter()
        prep.run(steps)
        ms, peak = 1000 * (time.perf_counter() - t0) / steps, None
    return {"ms": ms, "images_per_s": prep.batch_size * 1000 / ms, "peak_gib": peak}


# ------------------------------------------------------------------------- section 1 of the GPU check
def step_config(arch: str, mode: str, args):
    """The meanflow-cifar10-gpu U-Net (or the DiT-S/2-like network) at --batch-size; toy sizes in a dry run."""
    from straightflow.training.config import PRESETS, RunConfig, apply_overrides

    o = {**PRESETS["meanflow-cifar10-gpu"], "train.batch_size": args.batch_size}
    if arch == "dit":
        o.update(DIT)
    if args.dry_run:
        o.update(TINY_DIT if arch == "dit" else TINY_UNET)
    o.update(method_overrides(mode))
    return apply_overrides(RunConfig(), o)


def step_rows(ctx: Ctx, arch: str, compiled: bool) -> None:
    """The rows of one network, eager or compiled. Compiled rows go tangent first (the longest compile, which
    the correctness lane overlaps), each compiled, timed once the lane is done, freed, and the compiler reset."""
    a = ctx.args
    wanted = a.compile_modes if compiled else a.modes
    how = "compiled" if compiled else "eager"
    cost = COST[(arch, compiled)]
    reserve = ctx.eager_reserve() if compiled and arch == "unet" else 0.0
    order = sorted(MODES, key=lambda m: m != "tangent") if compiled else MODES
    for mode in order:
        row = {"model": arch, "step": mode, "compiled": compiled, "status": "ok"}
        if mode not in wanted:
            row["status"] = f"skipped: not in --{'compile-' if compiled else ''}modes"
        elif not ctx.fits(cost.get(mode, max(cost.values())) if isinstance(cost, dict) else cost, reserve):
            row["status"] = (f"skipped: time budget ({a.budget_s - ctx.elapsed():.0f} s left of --budget-s"
                             + (f", {reserve:.0f} s of it kept for the eager rows after this" if reserve else "") + ")")
        ctx.rows["step"].append(row)
        if row["status"] != "ok":
            continue
        ctx.current = f"step cost {arch} {mode} {how}"
        ctx.say(f"{ctx.current}: building{' and compiling' if compiled else ''}")
        prep = None
        try:
            if compiled:
                torch.compiler.reset()
            t0 = time.perf_counter()
            prep = prepare_step(step_config(arch, mode, a), ctx.device, a.precision,
                                compile_backend=a.compile_backend if compiled else None)
            ctx.meta.setdefault("params", {})[arch] = prep.params
            prep.run(a.warmup)  # and so compile
            synchronize(ctx.device)
            row["prepare_s"] = round(time.perf_counter() - t0, 1)
            if compiled:
                ctx.wait_background()
            row.update(time_steps(prep, a.steps))
        except Exception as e:  # a failing combination is a row, not a crash
            row["status"] = f"FAIL: {last_line(e)}"
            ctx.log(traceback.format_exc())
        prep = None
        ctx.recover()
        ctx.save()
    if compiled:
        torch.compiler.reset()
