"""The GPU check's Markdown report: a header, then one table per section (rows that did not run are listed
under their table with the reason)."""

from __future__ import annotations

from gpu_check.context import Ctx
from gpu_check.small_models import SPEED_TARGET
from gpu_check.step_cost import MEMORY_TARGET, MODES, STEP_NAMES, TIME_TARGET


def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and v is not None else "-"


def render(ctx: Ctx) -> str:
    m, a = ctx.meta, ctx.args
    out = [f"# GPU check (`benchmarks/gpu.py`){' -- DRY RUN, toy sizes, not a measurement' if a.dry_run else ''}",
           "", f"{m['date']}; torch {m['torch']} (CUDA {m['cuda']}); device: {m['device_name']}; "
           f"{m['cpu_threads']} CPU threads; straightflow {m['straightflow']} at {m['git']}; {m['seconds']} s "
           f"(budget {a.budget_s:g} s). Command: `{m['command']}`", ""]
    out += render_step(ctx) + render_small(ctx) + render_correct(ctx)
    if ctx.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in ctx.notes] + [""]
    return "\n".join(out)


def render_step(ctx: Ctx) -> list[str]:
    rows = ctx.rows["step"]
    if not rows:
        return []
    p = ctx.meta.get("params", {})
    b = ctx.args.batch_size
    prec = ("bf16 autocast" if ctx.args.precision == "bf16" else "fp32, no autocast") + \
        (", TF32, channels-last" if ctx.cuda else "")
    out = [f"## 1. Training-step cost (batch {b}, 3x32x32, {prec}; one step = loss, backward, AdamW)", "",
           f"Compiled: torch.compile(dynamic=False, backend {ctx.args.compile_backend}) for "
           f"{', '.join(ctx.args.compile_modes) or 'no rows'} (--compile-modes); x FM: against flow matching on the "
           "same network in the same mode; peak: torch.cuda.max_memory_allocated over the timed steps.", ""]
    for arch in dict.fromkeys(r["model"] for r in rows):
        if ctx.args.dry_run:
            name = "toy U-Net (8 channels, 2 levels)" if arch == "unet" else "toy DiT (32 wide, 2 deep, patch 2)"
        else:
            name = "U-Net of meanflow-cifar10-gpu" if arch == "unet" else \
                "DiT-S/2-like (384 wide, 12 deep, 6 heads, patch 2)"
        name += f", {p[arch] / 1e6:.{1 if p[arch] >= 1e6 else 3}f}M parameters" if arch in p else ""
        out += [f"### {name}", "", "| step | eager ms | x FM | images/s | peak GiB | x FM peak | compiled ms | x FM | "
                "images/s | peak GiB | x FM peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        by = {(r["step"], r["compiled"]): r for r in rows if r["model"] == arch}
        notes, verdicts = [], []
        for mode in MODES:
            cells = [STEP_NAMES[mode]]
            for compiled in (False, True):
                r, fm = by.get((mode, compiled)), by.get(("fm", compiled))
                if r is None or "ms" not in r:
                    cells += ["-"] * 5
                    if r is not None and not r["status"].startswith("skipped: not in"):
                        notes.append(f"{STEP_NAMES[mode]}, {'compiled' if compiled else 'eager'}: {r['status']}")
                    continue
                x = r["ms"] / fm["ms"] if fm and "ms" in fm else None
                xm = r["peak_gib"] / fm["peak_gib"] if fm and fm.get("peak_gib") and r["peak_gib"] else None
                cells += [_num(r["ms"], ".1f"), _num(x, ".2f"), _num(r["images_per_s"], ".0f"),
                          _num(r["peak_gib"], ".1f"), _num(xm, ".2f")]
                if mode == "tangent" and x is not None:
                    ok = x <= TIME_TARGET and (xm is None or xm <= MEMORY_TARGET)
                    mem = f"{xm:.2f}x" if xm is not None else "n/a"
                    verdicts.append(f"{'compiled' if compiled else 'eager'}: time {x:.2f}x, memory {mem} -> "
                                    f"{'met' if ok else 'NOT met'}")
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"Target: MeanFlow tangent <= {TIME_TARGET}x FM time and <= {MEMORY_TARGET}x FM peak memory. "
                + ("; ".join(verdicts) if verdicts else "not measured") + "."]
        if notes:
            out += [""] + [f"- {n}" for n in notes]
        out.append("")
    return out


def render_small(ctx: Ctx) -> list[str]:
    rows = ctx.rows["small"]
    if not rows:
        return []
    dev, thr = str(ctx.device), ctx.meta["cpu_threads"]
    out = [f"## 2. Small model speed through the Trainer (digits 8x8, fp32; CPU: {thr} thread(s))", "",
           f"| model | method | {dev} steps/s | {dev} compiled steps/s | CPU steps/s | {dev} / CPU | "
           f"target >= {SPEED_TARGET:g}x |", "|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        name = ("`--data digits` on an accelerator" if r["model"] == "default" else "`--data digits` on a CPU") + \
            (f" ({r['params'] / 1e6:.2f}M, batch {r['batch_size']})" if "params" in r else "")
        method = "flow matching" if r["method"] == "fm" else "MeanFlow tangent"
        cells = []
        for col in ("device", "compiled", "cpu"):
            v = r.get(col)
            cells.append(_num(v, ".1f") if isinstance(v, float) else "-")
            if isinstance(v, str):
                notes.append(f"{name}, {method}, {col}: {v}")
        ratio = r["device"] / r["cpu"] if all(isinstance(r.get(c), float) for c in ("device", "cpu")) else None
        verdict = "-" if ratio is None else ("met" if ratio >= SPEED_TARGET else "NOT met")
        out.append(f"| {name} | {method} | " + " | ".join(cells) + f" | {_num(ratio, '.1f')} | {verdict} |")
    return out + [""] + [f"- {n}" for n in notes] + ([""] if notes else [])


def render_correct(ctx: Ctx) -> list[str]:
    rows = ctx.rows["correct"]
    if not rows:
        return []
    out = [f"## 3. Correctness lane on {ctx.device}", "", "| check | result | s | details |", "|---|---|---|---|"]
    for r in rows:
        status = r["status"].replace("|", "/")
        out.append(f"| {r['check']} | {status} | {_num(r['seconds'], '.0f')} | {r['details'].replace('|', '/')} |")
    return out + [""]

