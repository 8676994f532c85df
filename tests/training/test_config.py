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
