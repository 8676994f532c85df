"""`straightflow demo translate`: unpaired image-to-image translation with rectified flow, thin digits to bold.

The two domains are made in-process from disjoint, class-balanced halves of scikit-learn's 8x8 digits
(:mod:`straightflow.data.domains`). Three runs, each started from the one before, with one small U-Net:

1. 1-RF: flow matching from digits-thin (t = 0) to digits-bold (t = 1) on minibatch-OT pairs;
2. 2-RF: reflow, flow matching on (x0, 1-RF(x0)) pairs of source training images;
3. 2-RF + distill: the 2-RF distilled to one Euler step on its own pairs.

Each is scored on the source's held-out test images (never trained on; :func:`evaluate_translation`): class
accuracy under a classifier trained on the target domain, feature-FID to the target beside its held-out floor at
equal n, and the transport cost E|y - x|^2. Writes OUT/1rf, OUT/2rf, OUT/2rf-distill (the runs), OUT/grid.png
(input beside each model's translation), OUT/metrics.txt / .md / .csv / .json. `benchmarks/translate.py` runs the
same study at a larger size (docs/images.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Shared by every run of the study (this demo and benchmarks/translate.py): domains, coupling, backbone, optimiser.
TRANSLATE_COMMON = {
    "data.source": "digits-thin", "data.data": "digits-bold", "method.name": "fm", "method.time_sampler": "uniform",
    # Minibatch-OT pairs for the 1-RF: on independent pairs the 1-RF's map keeps the input's class no better than
    # chance (benchmarks/translate.py --independent); reflow and distillation then train on fixed pairs.
    "data.coupling": "ot", "data.prefetch": False,
    "model.arch": "unet", "model.channels": 16, "model.channel_mult": "1,2", "model.num_res_blocks": 1,
    "train.batch_size": 256, "optim.lr": 2e-3, "optim.warmup_steps": 100, "optim.ema_decay": 0.999,
    "train.log_every": 100, "train.num_threads": 1,
}
DEMO_STEPS = {"1rf": 1200, "2rf": 600, "distill": 600}  # training steps per stage (times --scale)
DEMO_PAIRS = 2000  # (x0, x1) pairs per reflow / distillation (x0: source training images, with replacement)
PAIR_OPTIONS = {"solver": "rk4", "steps": 16, "batch_size": 1000}  # 64 NFE per pair


def evaluation_entries(runs: dict[str, Path]) -> list[tuple[str, object, str, int]]:
    """(name, run, solver, steps) rows of the study: 1-RF and 2-RF at 1 Euler step and by rk4 (16 steps),
    2-RF + distill at its one Euler step."""
    from straightflow.runs import load_run

    rf1, rf2, d1 = (load_run(runs[k]) for k in ("1rf", "2rf", "distill"))
    return [("1-RF", rf1, "euler", 1), ("1-RF", rf1, "rk4", 16), ("2-RF", rf2, "euler", 1), ("2-RF", rf2, "rk4", 16),
            ("2-RF + distill", d1, "euler", 1)]


def translation_study(
    out: str | Path, steps: dict[str, int], n_pairs: int, n_eval: int, progress: bool = False,
    common: dict | None = None,
) -> tuple[object, dict[str, float]]:
    """Train (or resume) the three runs of the study in out/, score them (a TranslationReport) and draw
    out/grid.png; returns (report, wall-clock seconds per stage). steps: training steps of "1rf", "2rf" and
    "distill"; common: TRANSLATE_COMMON with the caller's overrides."""
    from straightflow.pipelines.distill import distill
    from straightflow.pipelines.reflow import reflow
    from straightflow.pipelines.translate import evaluate_translation, translate
    from straightflow.plots.images import plot_translation_grid
    from straightflow.training.checkpoint import CHECKPOINT
    from straightflow.training.config import RunConfig, apply_overrides
    from straightflow.training.trainer import Trainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"1rf": out / "1rf", "2rf": out / "2rf", "distill": out / "2rf-distill"}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    cfg = apply_overrides(RunConfig(), {**(common or TRANSLATE_COMMON), "train.steps": steps["1rf"]})
    print(f"[translate] 1-RF: {cfg.data.source} -> {cfg.data.data}, {steps['1rf']} steps", flush=True)
    Trainer(cfg, runs["1rf"], resume=(runs["1rf"] / CHECKPOINT).exists(), progress=progress).fit()
    seconds["1rf"] = time.perf_counter() - start
    kw = {"pair_options": PAIR_OPTIONS, "progress": progress}
    for stage, parent in (("2rf", "1rf"), ("distill", "2rf")):
        start = time.perf_counter()
        print(f"[translate] {stage}: {n_pairs} pairs from {parent}, {steps[stage]} steps", flush=True)
        resume = (runs[stage] / CHECKPOINT).exists()
        if stage == "2rf":
            reflow(runs[parent], runs[stage], n_pairs, steps[stage], resume=resume, **kw)
        else:
            distill(runs[parent], runs[stage], k=1, n_pairs=n_pairs, train_steps=steps[stage], resume=resume, **kw)
        seconds[stage] = time.perf_counter() - start
    start = time.perf_counter()
    entries = evaluation_entries(runs)
    report = evaluate_translation(entries, n=n_eval, progress=progress)
    seconds["eval"] = time.perf_counter() - start
    source = entries[0][1].source()
    x, _ = source.heldout_labeled(min(20, source.test.shape[0]), 0)  # the first inputs the table scored
    columns = {"input": x}
    for name, run, solver, k in entries:
        columns[f"{name} ({solver}, {k})"] = translate(run, x, solver, k)[0]
    plot_translation_grid(columns, out / "grid.png", per_row=2, title=f"{report.source} -> {report.data}")
    return report, seconds


def write_study(report, seconds: dict[str, float], out: Path) -> str:
    """out/metrics.txt, .md, .csv (the table) and metrics.json (report and timings); returns the table's text."""
    table = report.table()
    text = table.text()
    (out / "metrics.txt").write_text(text + "\n")
    table.write(out / "metrics")
    (out / "metrics.json").write_text(json.dumps({**report.to_dict(), "seconds": seconds}, indent=2))
    return text


def run_translate(args) -> int:
    """The demo; `args` carries out, scale, n and no_progress (see cli/demo.py)."""
    out = Path("runs/demo-translate" if args.out == "runs/demo" else args.out)
    steps = {k: max(10, int(v * args.scale)) for k, v in DEMO_STEPS.items()}
    report, seconds = translation_study(out, steps, max(64, int(DEMO_PAIRS * args.scale)), args.n,
                                        progress=not args.no_progress)
    print(write_study(report, seconds, out))
    print(f"\n[demo translate] wrote {out}/grid.png, metrics.txt/.md/.csv, metrics.json and the runs "
          f"({', '.join(f'{k} {v:.0f}s' for k, v in seconds.items())})")
    return 0
