"""Section 2 of the GPU check, small-model speed: steps/s of the digits U-Nets through the real Trainer, on the
device and on the CPU in the same run (then train.compile=true on CUDA)."""

from __future__ import annotations

import time
import traceback

import torch

from gpu_check.context import COST, Ctx, last_line

SPEED_TARGET = 5.0  # CUDA steps/s over CPU steps/s


def small_overrides(key: str, args) -> dict:
    """The config of a digits network, named in full so that the CUDA and CPU rows train the same one:
    "default" (`--data digits` on an accelerator: METHOD_DEFAULTS "images") or "demo" (`--data digits
    --conditional` on a CPU: METHOD_DEFAULTS "images-cpu", the digits demo's on a CPU)."""
    from straightflow.cli.demo_digits import CPU_UNET, DIGITS_COMMON
    from straightflow.training.config import METHOD_DEFAULTS

    sized = {k: v for k, v in METHOD_DEFAULTS[("fm", "images")].items() if k in CPU_UNET}
    base = {"data.data": "digits", **sized} if key == "default" else {**DIGITS_COMMON, **CPU_UNET}
    if args.dry_run:
        base["train.batch_size"] = 16
    return base


def small_row(ctx: Ctx, key: str, method: str, device: str, compiled: bool = False) -> dict:
    """Steps/s of the real Trainer: warm-up, then fit() in chunks until --small-seconds have passed."""
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    o = {**small_overrides(key, ctx.args), "method.name": method, "train.device": device, "train.steps": 10**9,
         "train.ckpt_every": 10**9, "train.num_threads": ctx.meta["cpu_threads"], "train.compile": compiled}
    if method == "meanflow":
        o["method.jvp"] = "tangent"
    cfg = apply_overrides(RunConfig(), o)
    out = ctx.work / "small" / f"{key}-{method}-{device}{'-compiled' if compiled else ''}"
    trainer = Trainer(cfg, out, progress=False)
    on_cpu = trainer.device.type == "cpu"
    trainer.fit(max_steps=ctx.args.small_warmup if not on_cpu else 2)
    sync = (lambda: torch.cuda.synchronize(trainer.device)) if trainer.device.type == "cuda" else (lambda: None)
    sync()
    chunk, done, t0 = (1 if on_cpu else 10), 0, time.perf_counter()
    while True:
        trainer.fit(max_steps=chunk)
        done += chunk
        sync()
        if time.perf_counter() - t0 >= ctx.args.small_seconds:
            break
    rate = done / (time.perf_counter() - t0)
    params = sum(p.numel() for p in trainer.model.parameters())
    return {"steps_per_s": rate, "params": params, "batch_size": trainer.cfg.train.batch_size}


def small_rows(ctx: Ctx, compiled: bool) -> None:
    """Fill one row per (network, method): the device and CPU columns, or (compiled) the compiled column."""
    dev = str(ctx.device)
    for key in ctx.args.digits_models:
        for method in ("fm", "meanflow"):
            row = next((r for r in ctx.rows["small"] if r["model"] == key and r["method"] == method), None)
            if row is None:
                row = {"model": key, "method": method, "status": "ok"}
                ctx.rows["small"].append(row)
            targets = [(dev, "compiled")] if compiled else [(dev, "device"), ("cpu", "cpu")]
            for device, col in targets:
                need = COST["small-compile"] if compiled else COST["small"]
                if compiled and not ctx.cuda:
                    row[col] = "skipped: the dry-run does not compile through the Trainer (inductor on the CPU)"
                    continue
                if not ctx.fits(need):
                    row[col] = f"skipped: time budget ({ctx.args.budget_s - ctx.elapsed():.0f} s left)"
                    continue
                ctx.current = f"small model {key} {method} on {device}{' compiled' if compiled else ''}"
                ctx.say(ctx.current)
                if compiled:
                    torch.compiler.reset()
                try:
                    r = small_row(ctx, key, method, device, compiled)
                    row[col] = r["steps_per_s"]
                    row.update(params=r["params"], batch_size=r["batch_size"])
                except Exception as e:
                    row[col] = f"FAIL: {last_line(e)}"
                    ctx.log(traceback.format_exc())
                finally:
                    torch.set_num_threads(ctx.meta["cpu_threads"])
                ctx.recover()
                ctx.save()
