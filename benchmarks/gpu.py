"""The GPU check: training-step cost, small-model speed and a CUDA correctness lane, in one run of < 5 minutes.

    python benchmarks/gpu.py --out runs/gpu.md          # on a CUDA machine (writes gpu.md, gpu.json, gpu.log)
    python benchmarks/gpu.py --dry-run                  # the same code paths at toy sizes, on the CPU
    python benchmarks/gpu.py --sections step --models dit --budget-s 240      # e.g. a second run: DiT rows only

1. Training-step cost ("step"). The U-Net of the meanflow-cifar10-gpu preset (57.4M parameters, 3x32x32) and
   a DiT-S/2-like network (width 384, depth 12, 6 heads, patch 2: 256 tokens of 32x32x3, 32.4M parameters),
   batch 128, bf16 autocast, TF32 on, channels-last on CUDA (as the Trainer does), synthetic batches already
   on the device. One step = method.loss + backward + AdamW step (no clipping, no EMA), the same fixed
   function for every row: flow matching, and MeanFlow with method.jvp = tangent, func, func_nograd,
   finite_difference; eager, and torch.compile(dynamic=False) for --compile-modes (default fm,tangent: each
   distinct graph takes about a minute to compile). Mean ms over --steps steps after --warmup (CUDA events),
   ratio x FM (same network, same mode), images/s, and peak GiB (torch.cuda.max_memory_allocated over the
   timed steps, reset per row). Targets printed beside the rows: MeanFlow tangent <= 1.5x FM time and
   <= 1.3x FM peak memory.
2. Small-model speed ("small"). The digits U-Net of `--data digits` on an accelerator (METHOD_DEFAULTS
   "images": 1.14M parameters, batch 256) and on a CPU (the digits demo's: 0.19M, batch 64,
   class-conditional), each named in full so both devices train the same network: flow matching and MeanFlow
   (tangent) steps/s through the real Trainer (Trainer(cfg, out).fit(max_steps=...)), on CUDA and on the CPU
   (torch's default thread count) in the same run, against the target CUDA >= 5x CPU; then
   train.compile=true on CUDA when the budget allows.
3. CUDA correctness lane ("correct"), each row pass/FAIL with the error's last line, never a crash:
   class-conditional digits trained by the CLI with flow matching and MeanFlow (bf16, --compile, omega 1.5
   folded into MeanFlow), sampled by the CLI with guidance (`sample --class 3 --guidance 2`), then balanced
   samples scored by the project's digit classifier (class accuracy, chance 0.1, pass mark --min-accuracy);
   `torchrun --standalone --nproc-per-node 1 -m straightflow train` over nccl (moons flow matching, and
   digits MeanFlow class-conditional); `straightflow likelihood` of the moons run on CUDA. These run as
   subprocesses, in parallel, while section 1 compiles; compiled rows are timed only once they have finished.

Order of work, so that a tight budget drops the least useful rows: U-Net eager rows; U-Net compiled rows
(tangent first, with the lane in the background); small-model eager rows; DiT eager rows; DiT compiled rows;
small-model compiled rows. A row starts only if its estimated cost fits in what is left of --budget-s (the
U-Net's compiled rows also leave room for the eager rows after them); skipped rows say so. A watchdog writes
the report and stops everything at --hard-limit-s. The report (Markdown, JSON beside it, subprocess output
and tracebacks in a .log) is rewritten after every row, so a killed run still leaves its results.

--dry-run: toy networks (U-Net 8 channels, 2 levels; DiT 32 wide, 2 deep), batch 4, 2 timed steps, fp32
(CPU autocast is not the path under test), torch.compile with the aot_eager backend (no inductor C++ build),
no --compile in the lane and no compiled Trainer rows, 6 lane steps, one CPU thread. Without CUDA the script
refuses to run unless --dry-run is given.

Code: this file reads the options and runs the plan; the sections live in benchmarks/gpu_check/ (step_cost,
small_models, lane; context holds the shared run state, report renders the Markdown).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import torch
from gpu_check.context import Ctx, collect_meta, last_line
from gpu_check.lane import start_lane, worker
from gpu_check.small_models import small_rows
from gpu_check.step_cost import MODES, step_rows

SECTIONS = {"1": "step", "2": "small", "3": "correct", "step": "step", "small": "small", "correct": "correct"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", "--tiny", action="store_true", help="toy sizes on the CPU, to check the code paths")
    p.add_argument("--out", help="Markdown report path; the JSON and the log go beside it (default: in --work)")
    p.add_argument("--sections", default="step,small,correct", help="subset of step,small,correct (or 1,2,3)")
    p.add_argument("--models", default="unet,dit", help="section 1 networks: unet,dit")
    p.add_argument("--modes", default=",".join(MODES), help="section 1 eager rows: fm and the MeanFlow JVP modes")
    p.add_argument("--compile-modes", default="fm,tangent", help="section 1 rows also run under torch.compile "
                   "('' for none; each distinct graph takes about a minute to compile on the H200)")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend for section 1 "
                   "(default inductor; aot_eager in a dry run)")
    p.add_argument("--precision", default=None, choices=("bf16", "fp32"), help="autocast of sections 1 and 3 "
                   "(default bf16; fp32 in a dry run: CPU autocast is not the path under test)")
    p.add_argument("--batch-size", type=int, default=None, help="section 1 batch (default 128; 4 in a dry run)")
    p.add_argument("--steps", type=int, default=None, help="section 1 timed steps per row (default 10; dry 2)")
    p.add_argument("--warmup", type=int, default=None, help="section 1 warm-up steps per row (default 3; dry 1)")
    p.add_argument("--digits-models", default="default,demo", help="section 2 networks: default,demo")
    p.add_argument("--small-seconds", type=float, default=None, help="section 2 timing window per row (default 2)")
    p.add_argument("--small-warmup", type=int, default=20, help="section 2 warm-up steps on the device")
    p.add_argument("--no-small-compile", action="store_true", help="skip the section 2 train.compile=true rows")
    p.add_argument("--lane-steps", type=int, default=None, help="section 3 training steps (default 400; dry 6)")
    p.add_argument("--min-accuracy", type=float, default=0.2, help="section 3 class-accuracy pass mark")
    p.add_argument("--budget-s", type=float, default=None, help="rows start only if they fit (default 270; dry 900)")
    p.add_argument("--hard-limit-s", type=float, default=None, help="watchdog: report and stop (default 295)")
    p.add_argument("--device", default=None, help="cuda (default), or cpu (default of --dry-run)")
    p.add_argument("--work", help="folder for runs and caches (default: a new temporary folder)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--featnet", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--accuracy", help=argparse.SUPPRESS)
    a = p.parse_args()
    dry = a.dry_run
    for name, full, tiny in (("compile_backend", "inductor", "aot_eager"), ("precision", "bf16", "fp32"),
                             ("batch_size", 128, 4),
                             ("steps", 10, 2), ("warmup", 3, 1), ("small_seconds", 2.0, 0.2),
                             ("lane_steps", 400, 6), ("budget_s", 270.0, 900.0), ("hard_limit_s", 295.0, 1200.0)):
        if getattr(a, name) is None:
            setattr(a, name, tiny if dry else full)
    try:
        a.sections = [SECTIONS[s.strip()] for s in a.sections.split(",") if s.strip()]
    except KeyError as e:
        p.error(f"unknown section {e}; choose from step, small, correct")
    for name, allowed in (("models", ("unet", "dit")), ("modes", MODES), ("compile_modes", MODES),
                          ("digits_models", ("default", "demo"))):
        values = [v.strip() for v in getattr(a, name).split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"--{name.replace('_', '-')}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
        setattr(a, name, values)
    return a


def main() -> int:
    a = parse_args()
    if a.worker:
        worker(a)
        return 0
    want_cuda = a.device is None and not a.dry_run or (a.device or "").startswith("cuda")
    work = Path(a.work or tempfile.mkdtemp(prefix="straightflow-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    if want_cuda and not torch.cuda.is_available():
        msg = ("benchmarks/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here; run it with "
               "--dry-run to check its code paths on the CPU at toy sizes")
        print(msg, file=sys.stderr)
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(f"# GPU check (`benchmarks/gpu.py`)\n\nNot run: {msg}.\n")
        return 2
    device = torch.device(a.device or ("cuda" if want_cuda else "cpu"))
    if a.dry_run and device.type == "cpu":
        torch.set_num_threads(1)  # a shared small CPU: spin-waiting OpenMP threads collapse under load
    ctx = Ctx(a, device, work)
    with contextlib.suppress(Exception):
        ctx.tls_exclude = torch._C._dispatch_tls_local_exclude_set()
    ctx.paths()["log"].parent.mkdir(parents=True, exist_ok=True)
    ctx.paths()["log"].write_text("")
    if ctx.cuda:
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False
    ctx.meta.update(collect_meta(ctx))
    ctx.say(f"device {ctx.meta['device_name']}, work folder {work}, report {ctx.paths()['md']}")

    watchdog = start_watchdog(ctx)
    run_plan(ctx)
    watchdog.cancel()
    ctx.current = "done"
    text = ctx.save()
    print(text)
    ctx.say(f"wrote {ctx.paths()['md']}, {ctx.paths()['json'].name}, {ctx.paths()['log'].name}")
    return 0


def start_watchdog(ctx: Ctx) -> threading.Timer:
    """At --hard-limit-s: note where the run was, stop the lane's subprocesses, write the report and exit."""

    def on_deadline() -> None:
        ctx.notes.append(f"watchdog: stopped at {ctx.elapsed():.0f} s (--hard-limit-s) during: {ctx.current}")
        ctx.kill_children()
        with contextlib.suppress(Exception):
            print(ctx.save())
        os._exit(3)

    watchdog = threading.Timer(ctx.args.hard_limit_s, on_deadline)
    watchdog.daemon = True
    watchdog.start()
    return watchdog


def run_plan(ctx: Ctx) -> None:
    """The sections' work in the order that lets a tight budget drop the least useful rows (see the top)."""
    a = ctx.args
    s, unet, dit = a.sections, "unet" in a.models, "dit" in a.models
    plan = [("step" in s and unet, step_rows, "unet", False),
            ("correct" in s, start_lane),
            ("step" in s and unet and bool(a.compile_modes), step_rows, "unet", True),
            (True, Ctx.wait_background),  # nothing below is timed while the lane's subprocesses use the GPU
            ("small" in s, small_rows, False),
            ("step" in s and dit, step_rows, "dit", False),
            ("step" in s and dit and bool(a.compile_modes), step_rows, "dit", True),
            ("small" in s and not a.no_small_compile, small_rows, True)]
    for wanted, fn, *fn_args in plan:
        if not wanted:
            continue
        try:
            fn(ctx, *fn_args)
        except Exception as e:  # a bug here must not cost the rest of the GPU run
            ctx.notes.append(f"benchmark error in {fn.__name__}{tuple(fn_args)}: {last_line(e)} (see the log)")
            ctx.log(traceback.format_exc())
            ctx.recover()


if __name__ == "__main__":
    sys.exit(main())
