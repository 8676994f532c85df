"""MeanFlow's JVP cost on image networks, on the CPU: the ms of one flow-matching training step, and the time of
one MeanFlow step with each method.jvp (tangent, func, func_nograd, finite_difference) over it.

    .venv/bin/python benchmarks/jvp_cost.py                  # the table in docs/benchmarks.md (a few minutes)
    .venv/bin/python benchmarks/jvp_cost.py --quick          # a fast check that every row runs

Networks (class-conditional, 10 classes, label dropout 0.1, uniform times, default MeanFlow settings
otherwise; built by training/build.py's build_model / build_method from a RunConfig):

  digits-unet  the U-Net of `--data digits` on an accelerator (channels 32, "1,2,2"), 1x8x8, batch 128
  demo-unet    the U-Net of `--data digits` on a CPU, the digits demo's (channels 16, "1,2"), 1x8x8, batch 64
  digits-dit   a DiT on digits (width 128, depth 4, 4 heads, patch 2), 1x8x8, batch 128
  unet16       a U-Net on 3x16x16 with attention at 8 (channels 32, "1,2,2"), batch 64; no data set has that
               shape, so the config names folder:(none) at data.image_size 16, which build_model only reads
               for its shape (the batch is synthetic anyway)

One step = method.loss + backward + AdamW step, fp32, on a synthetic batch (noise x0, uniform x1, random labels):
the step function and timer of the GPU check (benchmarks/gpu_check/step_cost.py). Per network, the five steps
are built side by side, warmed up, then timed in --rounds interleaved rounds (round-robin over the modes, the
starting mode rotating each round; --steps steps per mode per round), so drifts in machine load hit every mode
alike; a mode's time is the median over its rounds, its ratio that median over flow matching's. Target:
MeanFlow tangent <= 1.6x flow matching on the CPU.

The table's header gives the machine's load average at the start and the end. On a shared CPU with more
runnable processes than cores, OpenMP's spin-waiting threads make --threads 2 steps several times slower
and the ratios erratic (once 0.65x to 6.3x for tangent); there, run with passive waiting, which the header
and the printed command then show:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/jvp_cost.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import torch
from gpu_check.step_cost import MODES, method_overrides, prepare_step, time_steps

from straightflow.cli.demo_digits import CPU_UNET, DIGITS_COMMON
from straightflow.training.config import RunConfig, apply_overrides

CPU = torch.device("cpu")
NUM_CLASSES = 10
TANGENT_TARGET = 1.6  # MeanFlow tangent step time over the flow-matching step time, on the CPU
CONDITIONAL = {"data.conditional": True, "method.label_dropout": 0.1, "method.time_sampler": "uniform"}
NETWORKS = {  # name: (table label, config overrides)
    "digits-unet": ("digits U-Net (`--data digits` on an accelerator)",
                    {"data.data": "digits", "model.channels": 32, "model.channel_mult": "1,2,2",
                     "train.batch_size": 128}),
    "demo-unet": ("digits U-Net on a CPU (the demo's)", {**DIGITS_COMMON, **CPU_UNET}),
    "digits-dit": ("digits DiT (128 wide, 4 deep, patch 2)",
                   {"data.data": "digits", "model.arch": "dit", "model.width": 128, "model.depth": 4,
                    "model.heads": 4, "model.patch_size": 2, "train.batch_size": 128}),
    "unet16": ("3x16x16 U-Net, attention at 8",
               {"data.data": "folder:(none)", "data.image_size": 16, "model.arch": "unet", "model.channels": 32,
                "model.channel_mult": "1,2,2", "model.attn_resolutions": "8", "train.batch_size": 64}),
}


def network_config(name: str, mode: str) -> RunConfig:
    return apply_overrides(RunConfig(), {**NETWORKS[name][1], **CONDITIONAL, **method_overrides(mode)})


def interleaved_ms(name: str, rounds: int, steps: int, warmup: int) -> tuple[dict[str, float], dict]:
    """Median ms per step of every mode on one network, timed in interleaved rounds; and the network's facts."""
    preps = {mode: prepare_step(network_config(name, mode), CPU, num_classes=NUM_CLASSES) for mode in MODES}
    for prep in preps.values():
        prep.run(warmup)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:  # each round starts one mode later
            times[mode].append(time_steps(preps[mode], steps)["ms"])
    facts = {"params": preps["fm"].params, "batch_size": preps["fm"].batch_size}
    return {mode: statistics.median(ms) for mode, ms in times.items()}, facts


def markdown_table(results: dict[str, tuple[dict[str, float], dict]]) -> list[str]:
    jvp_modes = [m for m in MODES if m != "fm"]
    out = ["| network | params | batch | FM ms/step | " + " | ".join(f"`{m}` x FM" for m in jvp_modes) + " |",
           "|---|---|---|---|" + "---|" * len(jvp_modes)]
    for name, (ms, facts) in results.items():
        ratios = " | ".join(f"{ms[m] / ms['fm']:.2f}x" for m in jvp_modes)
        out.append(f"| {NETWORKS[name][0]} | {facts['params'] / 1e6:.2f}M | {facts['batch_size']} | "
                   f"{ms['fm']:.1f} | {ratios} |")
    return out


def verdict(results: dict[str, tuple[dict[str, float], dict]]) -> str:
    ratios = {NETWORKS[n][0]: round(ms["tangent"] / ms["fm"], 2) for n, (ms, _) in results.items()}  # as shown
    over = [f"{label} {ratio:.2f}x" for label, ratio in ratios.items() if ratio > TANGENT_TARGET]
    return (f"Target: MeanFlow `tangent` <= {TANGENT_TARGET}x FM on the CPU: "
            + (f"NOT met on {', '.join(over)}." if over else "met on every network."))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated subset of {', '.join(NETWORKS)}")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds per network (default 10)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode per round (default 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per mode before the rounds (default 2)")
    p.add_argument("--quick", action="store_true", help="a fast check: 2 rounds of 1 step, 1 warm-up step")
    a = p.parse_args(argv)
    for key, full, quick in (("rounds", 10, 2), ("steps", 1, 1), ("warmup", 2, 1)):
        if getattr(a, key) is None:
            setattr(a, key, quick if a.quick else full)
    a.networks = [n.strip() for n in a.networks.split(",") if n.strip()]
    bad = [n for n in a.networks if n not in NETWORKS]
    if bad:
        p.error(f"--networks: unknown {', '.join(bad)}; choose from {', '.join(NETWORKS)}")
    return a


def header(a: argparse.Namespace, argv: list[str] | None, seconds: float, load_before: float) -> str:
    """One line: threads, OpenMP wait policy, rounds, date, torch, run time, load average, and the command."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    wait_policy = os.environ.get("OMP_WAIT_POLICY")  # read by OpenMP when torch loads, so only from outside
    command = " ".join([*([f"OMP_WAIT_POLICY={wait_policy}"] if wait_policy else []), "python",
                        "benchmarks/jvp_cost.py", *(sys.argv[1:] if argv is None else argv)])
    return (f"MeanFlow JVP cost on image networks, CPU, {torch.get_num_threads()} thread(s) (OpenMP wait policy "
            f"{wait_policy or 'default'}), fp32; median of {a.rounds} interleaved rounds x {a.steps} step(s) per "
            f"mode; {date}, torch {torch.__version__}, {seconds:.0f} s; 1-minute load average {load_before:.1f} at "
            f"the start, {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores). Command: `{command}`")


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    results = {}
    for name in a.networks:
        print(f"[jvp_cost {time.perf_counter() - start:5.0f}s] {name}", file=sys.stderr, flush=True)
        results[name] = interleaved_ms(name, a.rounds, a.steps, a.warmup)
    print(header(a, argv, time.perf_counter() - start, load_before), "", *markdown_table(results), "",
          verdict(results), sep="\n")


if __name__ == "__main__":
    main()
