"""Configs: TOML and overrides land on the right fields; bad keys and values are named in the error."""

import pytest

from straightflow.training.config import PRESETS, RunConfig, apply_overrides, load_toml


def test_toml_then_overrides_set_nested_fields(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nsteps = 123\n[method]\nname = "meanflow"\nratio = 0.25\n')
    cfg = load_toml(path)
    assert (cfg.train.steps, cfg.method.name, cfg.method.ratio) == (123, "meanflow", 0.25)
    cfg = apply_overrides(cfg, {"train.steps": "7", "train.compile": "true"})
    assert cfg.train.steps == 7 and cfg.train.compile is True
    assert cfg.model == RunConfig().model


def test_unknown_key_lists_known_keys():
    with pytest.raises(ValueError, match=r"unknown config key 'train\.stepz'.*train\.steps"):
        apply_overrides(RunConfig(), {"train.stepz": 1})


def test_wrong_type_names_field_and_value():
    with pytest.raises(ValueError, match=r"train\.steps takes a int, got 'many'"):
        apply_overrides(RunConfig(), {"train.steps": "many"})


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nsteps=")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(path)


def test_every_preset_applies_cleanly():
    for overrides in PRESETS.values():
        apply_overrides(RunConfig(), overrides)


# Defaults by method (METHOD_DEFAULTS): the plain `train --method M --data D` gets each method's winners.


def test_plain_configs_resolve_to_each_methods_defaults_for_vectors_and_images():
    from straightflow.training.config import _AUTO_VALUES, METHOD_DEFAULTS, resolve_defaults

    devices = {"vectors": "cpu", "images-cpu": "cpu", "images": "cuda"}
    for method in ("fm", "meanflow"):
        for kind, device in devices.items():
            cfg = resolve_defaults(apply_overrides(RunConfig(), {"method.name": method}), vectors=kind == "vectors",
                                   device=device)
            want = METHOD_DEFAULTS[(method, kind)]
            got = {key: getattr(getattr(cfg, key.partition(".")[0]), key.partition(".")[2]) for key in want}
            assert got == want and set(want) == set(_AUTO_VALUES)  # every auto field has a value for every kind
    mf = resolve_defaults(apply_overrides(RunConfig(), {"method.name": "meanflow"}))
    assert mf.data.coupling == "ot" and mf.model.time_features == "raw" and mf.method.tangent_velocity == "model"
    assert resolve_defaults(RunConfig(), vectors=False).model.time_features == "fourier"  # images
    # images are sized for the device: a small U-Net at batch 64 on a CPU, the larger one on an accelerator
    cpu, gpu = (resolve_defaults(RunConfig(), vectors=False, device=d) for d in ("cpu", "cuda"))
    assert (cpu.model.channels, cpu.model.channel_mult, cpu.train.batch_size) == (16, "1,2", 64)
    assert (gpu.model.channels, gpu.model.channel_mult, gpu.train.batch_size) == (32, "1,2,2", 256)
    # one-step MeanFlow on images pairs by minibatch OT on a CPU (measured on digits); flow matching does not
    mf_cpu = resolve_defaults(apply_overrides(RunConfig(), {"method.name": "meanflow"}), vectors=False, device="cpu")
    assert (mf_cpu.data.coupling, cpu.data.coupling) == ("ot", "independent")


def test_values_given_win_over_method_defaults_and_resolving_twice_changes_nothing():
    from straightflow.training.config import resolve_defaults

    given = {"method.name": "meanflow", "data.coupling": "independent", "train.steps": 7,
             "model.time_features": "raw+fourier"}
    cfg = resolve_defaults(apply_overrides(RunConfig(), given))
    assert (cfg.data.coupling, cfg.train.steps, cfg.model.time_features) == ("independent", 7, "raw+fourier")
    assert resolve_defaults(cfg) == cfg
    pairs = resolve_defaults(apply_overrides(RunConfig(), {"method.name": "meanflow", "data.pairs": "p"}))
    assert pairs.data.coupling == "independent"  # fixed pairs are already coupled


def test_saved_configs_that_predate_a_field_load_with_its_old_value():
    from straightflow.training.config import config_from_saved, config_to_dict

    old = config_to_dict(apply_overrides(RunConfig(), {"data.coupling": "independent", "train.steps": 5000}))
    del old["model"]["time_features"], old["model"]["max_frequency"], old["method"]["tangent_velocity"]
    del old["method"]["full_jump"]
    cfg = config_from_saved(old)
    assert (cfg.model.time_features, cfg.model.max_frequency) == ("fourier", 10.0)
    # MeanFlow runs made before these options resume as they were made
    assert (cfg.method.tangent_velocity, cfg.method.full_jump) == ("conditional", 0.0)
    new = config_to_dict(apply_overrides(RunConfig(), {"model.time_features": "raw"}))
    assert config_from_saved(new).model.time_features == "raw"


def test_train_help_names_each_methods_default():
    from straightflow.training.config import method_defaults_help

    text = method_defaults_help("data.coupling")
    assert "ot (meanflow, vectors)" in text and "independent (fm, vectors)" in text


def test_a_resumed_run_takes_its_auto_fields_from_its_saved_config():
    from straightflow.training.config import resolve_defaults

    saved = apply_overrides(RunConfig(), {"method.name": "meanflow", "data.coupling": "independent",
                                          "train.steps": 5000, "model.time_features": "fourier"})
    plain = apply_overrides(RunConfig(), {"method.name": "meanflow"})
    cfg = resolve_defaults(plain, like=saved)
    assert (cfg.data.coupling, cfg.train.steps, cfg.model.time_features) == ("independent", 5000, "fourier")
    assert resolve_defaults(apply_overrides(plain, {"train.steps": 9000}), like=saved).train.steps == 9000
    # an image run saved with the U-Net sized before (channels 32 at batch 256) resumes with it on a CPU too
    old_images = apply_overrides(saved, {"model.channels": 32, "model.channel_mult": "1,2,2", "train.batch_size": 256})
    cfg = resolve_defaults(plain, vectors=False, like=old_images, device="cpu")
    assert (cfg.model.channels, cfg.model.channel_mult, cfg.train.batch_size) == (32, "1,2,2", 256)


def test_toml_written_by_to_toml_loads_back_to_the_same_config(tmp_path):
    from straightflow.training.config import PRESETS, RunConfig, apply_overrides, load_toml, to_toml

    cfg = apply_overrides(RunConfig(), {**PRESETS["meanflow-cifar10-gpu"], "data.data": 'odd "name".npy'})
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_toml(path) == cfg


@pytest.mark.parametrize("key, value, message", [
    ("train.steps", -5, "train.steps must be >= 0"),
    ("train.batch_size", -1, "train.batch_size must be >= 0"),
    ("train.log_every", 0, "train.log_every must be >= 1"),
    ("train.ckpt_every", 0, "train.ckpt_every must be >= 1"),
    ("optim.lr", -1e-3, "optim.lr must be >= 0"),
    ("optim.lr", float("nan"), "optim.lr must be >= 0"),
    ("optim.ema_decay", 1.0, r"optim.ema_decay must lie in \[0, 1\)"),
    ("data.ot_block", -1, "data.ot_block must be >= 0"),
])
def test_out_of_range_settings_are_refused_before_any_work_naming_field_and_value(tmp_path, key, value, message):
    from straightflow.training.trainer import Trainer

    cfg = apply_overrides(RunConfig(), {key: value, "train.device": "cpu"})
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_data_ot_block_reaches_the_coupling_so_ot_solves_within_blocks():
    import torch

    from straightflow.paths.coupling import ot_coupling
    from straightflow.training.build import build_coupling

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(2, 32, 2, generator=g, dtype=torch.float64)
    coupled = build_coupling(apply_overrides(RunConfig(), {"data.coupling": "ot", "data.ot_block": 8}))
    assert torch.equal(coupled(x0, x1).x0, ot_coupling(x0, x1, block_size=8).x0)
    assert not torch.equal(coupled(x0, x1).x0, ot_coupling(x0, x1).x0)
