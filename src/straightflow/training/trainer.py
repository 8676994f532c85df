"""The training loop, readable top to bottom.

    data -> coupling -> method loss (path inside) -> AdamW step -> EMA -> (every k steps) log, checkpoint

Determinism: batch k is drawn from generators seeded by (seed, k) alone (straightflow.rng.step_generator),
so a run resumed from step k sees exactly the batches and noise an unbroken run would; together with the saved
weights, EMA and AdamW state, resuming reproduces the unbroken run bit for bit on the CPU.

Devices: every draw happens on the device that uses it. The method's times and label dropout come from a
generator on the training device; the batch is made on the training device too (finite data sets held there
once, Gaussian noise drawn there) unless a part of it is CPU work (see `batch_device`), in which case it is
made on the CPU and copied over pinned and non-blocking.

No host-device sync in the step: losses are summed on the device and read every `log_every` steps; a NaN or
Inf loss is recorded on the device (with its step) and raised at the next read, before any checkpoint is
written, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from straightflow import __version__
from straightflow.conditions import TensorCondition
from straightflow.data.epochs import epoch_indices
from straightflow.data.standardize import StandardizedData, resolve_mode, run_transform
from straightflow.data.tensors import as_data_source, condition_of
from straightflow.models.adapters import as_flow_model
from straightflow.models.embeddings import widen_to_two_times
from straightflow.paths.coupling import CoupledBatch
from straightflow.progress import progress
from straightflow.rng import step_generator
from straightflow.training.build import (
    build_coupling,
    build_data,
    build_method,
    build_model,
    build_pairs,
    build_teacher,
    num_classes_of,
    own_pieces,
)
from straightflow.training.checkpoint import (
    CHECKPOINT,
    checkpoint_file,
    clean_temporaries,
    load_checkpoint,
    load_optimizer,
    load_state_strict,
    optimizer_tensors,
    read_meta,
    save_checkpoint,
    write_text_atomic,
)
from straightflow.training.config import (
    RunConfig,
    check_config,
    config_from_saved,
    config_to_dict,
    dumps,
    resolve_defaults,
)
from straightflow.training.device import autocast, pick_device, to_device
from straightflow.training.distributed import (
    barrier,
    init_distributed,
    shard_range,
)
from straightflow.training.ema import EMA
from straightflow.training.lock import RunLock
from straightflow.training.loggers import check_log_spec, open_loggers, truncate_jsonl
from straightflow.training.meter import LossMeter, NonFiniteLossError, grad_norm
from straightflow.training.provenance import absolute_paths, run_provenance

__all__ = ["Trainer", "NonFiniteLossError", "CHECKPOINT", "BATCH_STREAM", "METHOD_STREAM", "lr_at", "batch_device"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
BATCH_STREAM, METHOD_STREAM = 0, 1  # step_generator streams: the global batch, and the method's per-rank draws


def lr_at(step: int, base: float, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then constant or cosine decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose from: cosine, constant")


def batch_device(device: torch.device, coupling: str, sources: Sequence) -> torch.device:
    """Where each step's batch is made: on the training `device` when every draw of it can happen there.

    sources: what the batch is drawn from (data and source, or the fixed pairs); each is held on the device
    and indexed there. OT and Sinkhorn couplings solve on the CPU (scipy, float64) and toy sets are sampled
    by CPU code, so those batches are made on the CPU, as on a CPU run, and copied over.
    """
    cpu = torch.device("cpu")
    if device.type == "cpu" or coupling != "independent":
        return cpu
    return device if all(s.draws_on_any_device for s in sources) else cpu


class Trainer:
    """Holds what a run's state is made of: model, EMA, optimizer, step. `fit()` runs the loop."""

    def __init__(self, cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
                 model: torch.nn.Module | None = None, data=None, source=None):
        """cfg: the run's settings; out: its folder. Bring your own pieces, or leave them to cfg:

        model: any nn.Module (see straightflow.models.adapters for the calling convention; a module that does
            not speak it is wrapped by as_flow_model); recorded as model.arch "custom", so loading the run takes
            the same module again (load_run(path, model=...)).
        data: your data (a tensor, (x, c), a Dataset, a DataLoader or an iterable of batches; see
            straightflow.data.tensors) in place of cfg.data.data; source: likewise for the source at t = 0
            (default: cfg.data.source, a Gaussian).
        """
        self.out, self.progress = Path(out), progress
        data = None if data is None else as_data_source(data)
        source = None if source is None else as_data_source(source)
        cfg = own_pieces(cfg, model, data, source)
        check_config(cfg)  # before any work: bad numbers are one-line errors, not crashes minutes later
        check_log_spec(cfg.train.log)  # likewise a logging backend whose package is missing
        cfg = absolute_paths(cfg)  # config.json then names the same files from any working directory
        self.data, self.source = build_data(cfg, data, source)
        self.provenance = run_provenance(cfg, self.data)  # shape, data and source fingerprints (for meta)
        # Fields left to the method's default (data.coupling "auto", train.steps 0) get their values here, once.
        saved = saved_meta = None
        if resume and (self.out / CHECKPOINT).exists():  # a resumed run keeps the defaults it was made with
            saved_meta = read_meta(self.out / CHECKPOINT)
            saved = config_from_saved(saved_meta["config"])
        self.condition = condition_of(self.data)  # class labels, a tensor condition, or None
        self.device = pick_device(cfg.train.device)
        shape = tuple(getattr(self.data, "shape", ()))
        cfg = self.cfg = resolve_defaults(cfg, vectors=len(shape) <= 1, like=saved, device=self.device.type,
                                          tensor_condition=isinstance(self.condition, TensorCondition))
        std = resolve_mode(cfg.data.standardize, self.data, saved.data.standardize if saved else None)
        cfg = self.cfg = replace(cfg, data=replace(cfg.data, standardize=std))  # config.json records on / off
        threads = cfg.train.num_threads
        if threads == 0 and self.device.type == "cpu" and (len(shape) <= 1 or max(shape[1:]) <= 16):
            # A small MLP or U-Net gains little from a second thread (the 8x8 digits U-Net ran 1.7x slower on
            # two with passive waiting, benchmarks/shared_cores.py), and OpenMP threads that spin-wait collapse
            # (100x slower, measured) when another process shares the cores.
            threads = 1
        if threads > 0:
            torch.set_num_threads(threads)
        self.dist = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.train.batch_size % self.dist.world_size:
            raise ValueError(f"batch size {cfg.train.batch_size} is not divisible by the world size "
                             f"{self.dist.world_size}; choose a multiple of it")
        if cfg.data.ot_scope not in ("global", "rank"):
            raise ValueError(f"unknown data.ot_scope {cfg.data.ot_scope!r}; choose from: global, rank")
        self.num_classes = num_classes_of(self.data)
        # data.standardize: the model trains on (x - mean) / std; the statistics go into the checkpoint
        self.transform = run_transform(cfg, self.data, saved_meta, str(self.out / CHECKPOINT))
        if self.transform is not None:
            self.data = StandardizedData(self.data, self.transform)
        self.coupling = build_coupling(cfg)
        self.pairs = build_pairs(cfg, self.data, self.num_classes)  # None unless data.pairs (reflow, distill)
        sources = [self.pairs] if self.pairs is not None else [self.data, self.source]
        self.batch_device = batch_device(self.device, cfg.data.coupling, sources)
        if self.pairs is not None:
            self.pairs = self.pairs.to(self.batch_device)
        else:  # finite sets are copied to the device once, here, instead of one batch per step
            self.data, self.source = self.data.to(self.batch_device), self.source.to(self.batch_device)
        teacher = build_teacher(cfg, self.data.dim, self.num_classes, self.device)
        self.method = build_method(cfg, self.condition or 0, teacher)
        torch.manual_seed(cfg.train.seed)
        if model is None:
            model = build_model(cfg, self.data.shape, self.condition or 0)
        else:
            model = as_flow_model(model, 2 if cfg.method.name == "meanflow" else 1, self.condition is not None)
        self.model = model.to(self.device)
        self.ema = EMA(self.model, cfg.optim.ema_decay)
        o = cfg.optim
        # On CUDA one fused kernel updates every parameter (a small model's step is bound by kernel launches).
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay,
            fused=True if self.device.type == "cuda" else None,
        )
        self.step = 0
        if self.device.type == "cuda" and len(getattr(self.data, "shape", ())) == 3:  # (C, H, W) images
            self.model.to(memory_format=torch.channels_last)  # convolutions run faster in NHWC on GPUs
        self.forward_model = self.model
        if self.dist.enabled:  # DDP's forward hooks all-reduce the gradients: always call through it
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.train.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown train.compile_mode {cfg.train.compile_mode!r}; choose from: "
                             f"{', '.join(COMPILE_MODES)}")
        if cfg.train.compile:
            self.forward_model = torch.compile(self.forward_model, mode=cfg.train.compile_mode)
        self._owns_folder = resume  # a fresh run must find the folder without a checkpoint when it starts
        if resume:
            self._resume()
        elif (self.out / CHECKPOINT).exists():
            raise ValueError(f"{self.out} already holds a run; pass --resume to continue it or choose a new --out")
        elif cfg.train.init_from:
            self._init_from(cfg.train.init_from)

    # ----------------------------------------------------------------------------------------- batches
    def make_batch(self, step: int) -> CoupledBatch:
        """This rank's slice of global batch `step`: x1 from the data, x0 from the source, coupled.

        Made on `self.batch_device`. The global batch depends only on (seed, step), so the union over ranks is
        what one process draws.
        """
        b, seed, device = self.cfg.train.batch_size, self.cfg.train.seed, self.batch_device
        if self.pairs is not None:  # reflow / distillation: rows of a fixed coupling in epoch order
            batch = self.pairs.rows(epoch_indices(step, b, len(self.pairs), seed, device))
            start, stop = shard_range(b, self.dist)
            return CoupledBatch(batch.x0[start:stop], batch.x1[start:stop],
                                None if batch.label is None else batch.label[start:stop])
        g = step_generator(seed, step, BATCH_STREAM, device=device)
        if hasattr(self.data, "rows"):  # a finite set: every row once per epoch, across all ranks
            x1, label = self.data.rows(epoch_indices(step, b, self.data.num_rows, seed, device), g)
        elif self.condition is not None:
            x1, label = self.data.sample_labeled(b, g)
        else:
            x1, label = self.data.sample(b, g), None
        x0 = self.source.sample(b, g)
        start, stop = shard_range(b, self.dist)
        if self.cfg.data.ot_scope == "global" or not self.dist.enabled:
            batch = self.coupling(x0, x1, label, generator=g)
            return CoupledBatch(batch.x0[start:stop], batch.x1[start:stop],
                                None if batch.label is None else batch.label[start:stop])
        sl = slice(start, stop)
        return self.coupling(x0[sl], x1[sl], None if label is None else label[sl], generator=g)

    def _to_device(self, batch: CoupledBatch) -> CoupledBatch:
        """The batch on the training device: a no-op for batches made there, an asynchronous copy otherwise."""
        label = None if batch.label is None else to_device(batch.label, self.device)
        return CoupledBatch(to_device(batch.x0, self.device), to_device(batch.x1, self.device), label)

    # ----------------------------------------------------------------------------------------- the loop
    def fit(self, max_steps: int | None = None) -> None:
        """Train to cfg.train.steps (or at most `max_steps` more steps: benchmarks train in slices).

        Rank 0 holds the run folder's lock (training.lock) meanwhile: a second writer gets a one-line error
        before any work. Under the lock it removes the temporary files a killed save left, drops log lines
        past the checkpoint (a resumed run writes them again; a fresh one keeps none) and refuses a folder
        that another run filled since this trainer was made."""
        lock = RunLock(self.out) if self.dist.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            if lock is not None:
                if not self._owns_folder and (self.out / CHECKPOINT).exists():
                    raise ValueError(f"{self.out} already holds a run; pass --resume to continue it or choose a "
                                     "new --out")
                clean_temporaries(self.out)
                self._truncate_metrics()
            self._owns_folder = True
            self._fit(max_steps)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, max_steps: int | None) -> None:
        cfg, t = self.cfg, self.cfg.train
        stop = t.steps if max_steps is None else min(t.steps, self.step + max_steps)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "config.json", dumps(cfg))
        # Prefetch: the next batch (and its OT assignment, which releases the GIL) is built while this
        # step trains.
        # Only a coupling with real work (an assignment or a Sinkhorn solve) is worth a thread: for plain
        # sampling the GIL hand-offs cost more than they hide (measured 2x slower per step on 2 cores).
        prefetch = cfg.data.prefetch and cfg.data.coupling != "independent" and self.pairs is None
        pool = ThreadPoolExecutor(1) if prefetch else None
        fetch = (lambda k: pool.submit(self.make_batch, k)) if pool else None
        pending = fetch(self.step) if fetch and self.step < stop else None
        self._logger = open_loggers(t.log, self.out, config_to_dict(cfg)) if self.dist.is_main else None
        snapshot = self._snapshot_maker() if t.sample_every and self.dist.is_main else None
        meter = LossMeter(self.device)
        show = self.progress and self.dist.is_main
        bar = progress(total=t.steps, initial=self.step, enabled=show, desc="train", unit="step")
        try:
            while self.step < stop:
                step = self.step
                batch = pending.result() if pending else self.make_batch(step)
                if fetch and step + 1 < stop:
                    pending = fetch(step + 1)
                batch = self._to_device(batch)
                lr = lr_at(step, cfg.optim.lr, cfg.optim.warmup_steps, t.steps, cfg.optim.lr_schedule)
                for group in self.opt.param_groups:
                    group["lr"] = lr

                g = step_generator(t.seed, step, METHOD_STREAM, self.dist.rank, self.device)
                with autocast(self.device, t.precision):
                    out = self.method.loss(self.forward_model, batch, g)
                loss = out.loss.float().mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip, foreach=True)
                else:
                    norm = grad_norm(self.model.parameters())
                self.opt.step()
                self.ema.update(self.model, step)
                meter.add(step, loss, {**out.logs, "grad_norm": norm})

                self.step = step + 1
                bar.update(1)
                last = self.step == t.steps
                if self.step % t.log_every == 0 or last:
                    record = self._log(meter, lr)  # raises on a non-finite loss
                    bar.set_postfix(loss=record["loss"])
                if snapshot is not None and (self.step % t.sample_every == 0 or last):
                    meter.started += snapshot.log(self.ema.model, self.device, self.step, self._logger)  # s
                if self.step % t.ckpt_every == 0 or last:
                    if meter.count:  # steps since the last read must be checked before saving
                        self._log(meter, lr)
                    self.save()
        finally:
            bar.close()
            if self._logger is not None:
                self._logger.close()
                self._logger = None
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)

    # ----------------------------------------------------------------------------------------- logging
    def _log(self, meter: LossMeter, lr: float) -> dict:
        """The one host read every log_every steps (training.meter), written by rank 0 to the run's loggers."""
        record = meter.read(self.step, lr, self.cfg.train.batch_size, self.dist, self.out)
        if self._logger is not None:  # rank 0 only (opened by _fit)
            self._logger.log_scalars(self.step, {k: v for k, v in record.items() if k != "step"})
        return record

    def _snapshot_maker(self):
        """What samples the EMA network every train.sample_every steps (training.snapshots)."""
        from straightflow.training.snapshots import SnapshotMaker

        return SnapshotMaker.for_run(self.cfg, self.data, self.source, self.condition)

    # ----------------------------------------------------------------------------------------- state
    def save(self) -> None:
        """Rank 0 writes the checkpoint atomically; the others wait so nobody runs ahead of a save."""
        if self.dist.is_main:
            self._write_checkpoint()
        barrier()

    def _write_checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.model.state_dict().items()})
        tensors.update(optimizer_tensors(self.opt))
        meta = {"config": config_to_dict(self.cfg), "step": self.step, "version": __version__,
                "dim": self.data.dim, "num_classes": self.num_classes, "torch": torch.__version__, **self.provenance,
                "condition": None if self.condition is None else self.condition.to_meta()}
        if self.transform is not None:
            meta["data_transform"] = self.transform.to_meta()
        save_checkpoint(self.out / CHECKPOINT, tensors, meta)

    def _resume(self) -> None:
        path = self.out / CHECKPOINT
        tensors, meta = load_checkpoint(path)
        saved = absolute_paths(config_from_saved(meta["config"]))  # a run saved with relative paths: as before
        if meta.get("data", self.provenance["data"]) != self.provenance["data"]:
            raise ValueError(f"cannot resume {path}: its data {meta['data']['spec']} changed since the run started")
        # Everything but the length of the run and run-time knobs must match the checkpoint.
        def fixed(c: RunConfig) -> dict:
            d = config_to_dict(c)
            for k in ("steps", "log_every", "ckpt_every", "device", "compile", "compile_mode", "num_threads", "log",
                      "sample_every"):
                d["train"].pop(k)
            d["data"].pop("prefetch")
            return d
        if fixed(saved) != fixed(self.cfg):
            diff = [f"{s}.{k}" for s, sec in fixed(saved).items() for k, v in sec.items()
                    if fixed(self.cfg)[s][k] != v]
            raise ValueError(f"cannot resume {path}: the run was made with other settings ({', '.join(diff)})")
        load_state_strict(self.model, tensors, "model.", str(path))
        load_state_strict(self.ema.model, tensors, "ema.", str(path))
        load_optimizer(self.opt, tensors)
        self.step = int(meta["step"])  # log lines past it are dropped by fit, under the folder's lock

    def _init_from(self, run: str) -> None:
        """Start model and EMA from another run's EMA weights (the flow that made the pairs); fresh AdamW."""
        tensors, meta = load_checkpoint(checkpoint_file(run))
        if config_from_saved(meta["config"]).method.name != "meanflow" and self.cfg.method.name == "meanflow":
            tensors = widen_to_two_times(tensors, self.model, prefix="ema.")  # a velocity teacher's weights
        load_state_strict(self.model, tensors, "ema.", f"{run} (train.init_from)")
        load_state_strict(self.ema.model, tensors, "ema.", f"{run} (train.init_from)")

    def _truncate_metrics(self) -> None:
        # Lines logged after the checkpoint belong to a future the resumed run will write again.
        for name in ("metrics.jsonl", "quality.jsonl"):
            truncate_jsonl(self.out / name, self.step)
