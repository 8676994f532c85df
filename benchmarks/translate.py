"""Unpaired image-to-image translation with rectified flow: thin digits -> bold digits, 1-RF, 2-RF, distilled.

    OMP_NUM_THREADS=1 python benchmarks/translate.py --threads 1                   # docs/images.md's table
    OMP_NUM_THREADS=1 python benchmarks/translate.py --threads 1 --independent     # + a 1-RF on independent pairs

The study of `straightflow demo translate` (cli/demo_translate.py: domains, U-Net, minibatch-OT 1-RF, reflow
and one-step distillation on rk4 pairs, evaluation on the source's held-out test images) at a larger size:
--steps-1rf / --steps-2rf / --steps-distill training steps and --pairs pairs per stage. Prints the table
(class accuracy under a target-domain classifier, feature-FID beside its held-out floor at equal n, transport
cost E|y - x|^2) and the wall-clock of each stage; writes OUT/metrics.* and OUT/grid.png, and with --docs
copies the grid to docs/img/translate-digits.png and draws held-out images of both domains in
docs/img/translate-domains.png.

--independent also trains a 1-RF on independent pairs (the paper's 1-RF coupling) with the same settings and
adds its rows: what the coupling of the first flow does to the input's class.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from straightflow.cli.demo_translate import TRANSLATE_COMMON, translation_study, write_study
from straightflow.pipelines.translate import evaluate_translation
from straightflow.plots.images import plot_image_grid
from straightflow.runs import load_run
from straightflow.training.checkpoint import CHECKPOINT
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

DOCS_GRID = Path(__file__).resolve().parent.parent / "docs" / "img" / "translate-digits.png"
DOCS_DOMAINS = DOCS_GRID.with_name("translate-domains.png")


def independent_rows(out: Path, steps: int, n: int, common: dict) -> tuple[list, float]:
    """The rows of a 1-RF trained on independent pairs (otherwise the study's 1-RF), and its training seconds."""
    run_dir = out / "1rf-independent"
    cfg = apply_overrides(RunConfig(), {**common, "data.coupling": "independent", "train.steps": steps})
    start = time.perf_counter()
    Trainer(cfg, run_dir, resume=(run_dir / CHECKPOINT).exists(), progress=False).fit()
    seconds = time.perf_counter() - start
    run = load_run(run_dir)
    report = evaluate_translation([("1-RF indep.", run, "euler", 1), ("1-RF indep.", run, "rk4", 16)], n=n)
    return report.rows[1:], seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps-1rf", type=int, default=3000)
    p.add_argument("--steps-2rf", type=int, default=2000)
    p.add_argument("--steps-distill", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=4000, help="(x0, x1) pairs per reflow / distillation")
    p.add_argument("--n", type=int, default=1000, help="held-out source images to translate (at most the test split)")
    p.add_argument("--out", default="runs/bench-translate")
    p.add_argument("--fresh", action="store_true", help="delete OUT first (else finished stages are reused)")
    p.add_argument("--independent", action="store_true", help="also a 1-RF on independent pairs")
    p.add_argument("--docs", action="store_true", help=f"copy the grid to {DOCS_GRID}, draw {DOCS_DOMAINS}")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    common = {**TRANSLATE_COMMON, "train.num_threads": args.threads}
    steps = {"1rf": args.steps_1rf, "2rf": args.steps_2rf, "distill": args.steps_distill}
    report, seconds = translation_study(out, steps, args.pairs, args.n, common=common)
    if args.independent:
        rows, seconds["1rf-independent"] = independent_rows(out, args.steps_1rf, args.n, common)
        report.rows[1:1] = rows  # after the untranslated inputs, before the OT 1-RF
    print(write_study(report, seconds, out))
    print("settings: " + ", ".join(f"{k}={v}" for k, v in common.items()) + f"; steps {steps}; {args.pairs} pairs "
          f"per stage (rk4, 16 steps)")
    print("wall-clock: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    if args.docs:
        DOCS_GRID.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "grid.png", DOCS_GRID)
        source, target = load_run(out / "1rf").data_and_source()[::-1]
        examples = torch.cat([source.heldout(10), target.heldout(10)])
        plot_image_grid(examples, DOCS_DOMAINS, nrow=10, row_labels=[source.name, target.name],
                        title="held-out images of the two domains (different digits)")
        print(f"[translate] wrote {DOCS_GRID} and {DOCS_DOMAINS}")


if __name__ == "__main__":
    main()
