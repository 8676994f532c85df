"""Training: resuming after a kill reproduces an unbroken run, NaN stops cleanly, checkpoints are guarded."""

import json

import pytest
import torch

from straightflow.training.checkpoint import load_checkpoint
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import CHECKPOINT, NonFiniteLossError, Trainer, batch_device, lr_at

# On the CPU whatever the machine: bit-exact resume is a CPU property (GPU kernels may reorder sums).
SMALL = {
    "data.data": "moons", "model.width": 32, "model.depth": 2, "train.steps": 40, "train.batch_size": 64,
    "train.log_every": 10, "train.ckpt_every": 20, "optim.warmup_steps": 5, "train.device": "cpu",
}
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def small_config(**extra) -> RunConfig:
    return apply_overrides(RunConfig(), {**SMALL, **extra})


class Killed(Exception):
    pass


def _wrap_loss(trainer: Trainer, wrapper) -> None:
    """Call `wrapper(loss, model, batch, generator)` in place of the method's loss."""
    loss = trainer.method.loss
    object.__setattr__(trainer, "method", type("M", (), {"loss": staticmethod(
        lambda model, batch, generator: wrapper(loss, model, batch, generator))})())


def _kill_at(trainer: Trainer, step: int) -> None:
    def dying(loss, model, batch, generator):
        if trainer.step == step:
            raise Killed
        return loss(model, batch, generator)

    _wrap_loss(trainer, dying)


@pytest.mark.parametrize("coupling", ["independent", "ot"])
def test_resume_after_kill_equals_unbroken_run(tmp_path, coupling):
    cfg = small_config(**{"data.coupling": coupling})
    unbroken = Trainer(cfg, tmp_path / "a", progress=False)
    unbroken.fit()

    broken = Trainer(cfg, tmp_path / "b", progress=False)
    _kill_at(broken, 27)  # after the step-20 checkpoint, before the next
    with pytest.raises(Killed):
        broken.fit()
    resumed = Trainer(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 20
    resumed.fit()
    for (name, a), (_, b) in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(unbroken.ema.model.parameters(), resumed.ema.model.parameters(), strict=True):
        assert torch.equal(a, b)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]  # no duplicated or missing log lines across the kill


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(small_config(), tmp_path, progress=False)

    def poisoned(loss, model, batch, generator):
        out = loss(model, batch, generator)
        if trainer.step >= 33:
            out.loss = out.loss * float("nan")
        return out

    _wrap_loss(trainer, poisoned)
    with pytest.raises(NonFiniteLossError, match="step 33"):
        trainer.fit()
    _, meta = load_checkpoint(tmp_path / CHECKPOINT)
    assert meta["step"] == 20
    tensors, _ = load_checkpoint(tmp_path / CHECKPOINT)
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_an_overflowing_gradient_stops_the_run_although_the_loss_is_finite(tmp_path):
    # A diverging run (MeanFlow at p = 0 reached loss 1e24 and an infinite gradient norm) must not train on.
    trainer = Trainer(small_config(), tmp_path, progress=False)

    def huge(loss, model, batch, generator):
        out = loss(model, batch, generator)
        if trainer.step >= 25:
            out.loss = out.loss * 1e30  # finite in float32, but its gradient norm overflows to inf
        return out

    _wrap_loss(trainer, huge)
    with pytest.raises(NonFiniteLossError, match="non-finite loss or gradient at step 25"):
        trainer.fit()
    assert load_checkpoint(tmp_path / CHECKPOINT)[1]["step"] == 20


def test_resume_with_other_model_settings_is_refused(tmp_path):
    Trainer(small_config(**{"train.steps": 20}), tmp_path, progress=False).fit()
    with pytest.raises(ValueError, match="model.width"):
        Trainer(small_config(**{"model.width": 64}), tmp_path, resume=True, progress=False)


def test_unknown_compile_mode_is_a_one_line_error_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match="'fastest'; choose from: default, reduce-overhead, max-autotune"):
        Trainer(small_config(**{"train.compile_mode": "fastest"}), tmp_path, progress=False)


def test_new_run_never_overwrites_an_existing_one(tmp_path):
    Trainer(small_config(**{"train.steps": 20}), tmp_path, progress=False).fit()
    with pytest.raises(ValueError, match="--resume"):
        Trainer(small_config(), tmp_path, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    Trainer(small_config(**{"train.steps": 20}), tmp_path, progress=False).fit()
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt"):
        Trainer(small_config(), tmp_path, resume=True, progress=False)


def test_checkpoint_write_is_atomic_no_temp_files_left(tmp_path):
    Trainer(small_config(**{"train.steps": 20}), tmp_path, progress=False).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "config.json", "metrics.jsonl"]


def test_lr_schedule_warms_up_linearly_then_decays_to_zero():
    assert lr_at(0, 1.0, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_at(55, 1.0, 10, 100, "constant") == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(20, 1.0, 10, 100, "linear")


def test_batches_are_made_on_the_training_device_unless_part_of_them_is_cpu_work():
    from straightflow.data.images import resolve_images
    from straightflow.data.pairs import PairSource
    from straightflow.data.source import GaussianSource, ToySource

    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # only compared, never used: no GPU needed
    digits, noise = resolve_images("digits"), GaussianSource((1, 8, 8))
    assert batch_device(gpu, "independent", [digits, noise]) == gpu
    assert batch_device(gpu, "independent", [PairSource(torch.zeros(4, 2), torch.ones(4, 2))]) == gpu
    assert batch_device(gpu, "ot", [digits, noise]) == cpu  # the assignment is solved by scipy
    assert batch_device(gpu, "independent", [ToySource("moons"), GaussianSource(2)]) == cpu  # CPU code
    assert batch_device(cpu, "independent", [digits, noise]) == cpu


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["fm", "meanflow"])
def test_conditional_training_with_label_dropout_draws_everything_on_the_training_device(tmp_path, method, device):
    cfg = apply_overrides(RunConfig(), {
        "data.data": "digits", "data.conditional": True, "method.name": method, "method.jvp": "func",
        "method.label_dropout": 0.5, "model.channels": 8, "model.channel_mult": "1,2", "model.n_frequencies": 4,
        "train.batch_size": 8, "train.steps": 3, "train.log_every": 3, "train.device": device,
    })
    trainer = Trainer(cfg, tmp_path, progress=False)
    seen = []

    def recording(loss, model, batch, generator):
        seen.append({generator.device.type, batch.x0.device.type, batch.x1.device.type, batch.label.device.type})
        return loss(model, batch, generator)

    _wrap_loss(trainer, recording)
    trainer.fit()
    assert seen == [{device}] * 3
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 3 and record["loss"] > 0


def test_plain_image_runs_on_a_cpu_get_the_small_unet_at_batch_64_on_one_thread(tmp_path):
    # The defaults sized for a 2-core CPU (METHOD_DEFAULTS "images-cpu"): a second thread made the digits U-Net
    # slower, so a plain run takes one; the U-Net built is the one config.json records.
    before = torch.get_num_threads()
    try:
        trainer = Trainer(apply_overrides(RunConfig(), {"data.data": "digits", "train.device": "cpu",
                                                        "train.steps": 1}), tmp_path, progress=False)
        cfg = trainer.cfg
        assert (cfg.model.channels, cfg.model.channel_mult, cfg.train.batch_size) == (16, "1,2", 64)
        assert torch.get_num_threads() == 1
        assert trainer.model.stem.out_channels == 16
        trainer.fit()
        saved = json.loads((tmp_path / "config.json").read_text())
        assert saved["model"]["channels"] == 16 and saved["train"]["batch_size"] == 64
    finally:
        torch.set_num_threads(before)
