"""Checkpoint files: the umask's permissions, failed writes that keep the previous file, leftovers removed,
and metadata errors that name the file."""

import errno
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from straightflow.training import checkpoint as ckpt
from straightflow.training.checkpoint import clean_temporaries, load_checkpoint, read_meta, save_checkpoint

META = {"config": {}, "step": 1}


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_get_the_permissions_the_umask_allows(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        save_checkpoint(tmp_path / "c.safetensors", {"a": torch.zeros(2)}, META)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.safetensors").stat().st_mode) == mode


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch, code):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.ones(2)}, {**META, "step": 1})

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(OSError, match=f"cannot write {path}: {os.strerror(code)}") as err:
        save_checkpoint(path, {"a": torch.zeros(2)}, {**META, "step": 2})
    assert err.value.errno == code and "\n" not in str(err.value)
    tensors, meta = load_checkpoint(path)
    assert meta["step"] == 1 and torch.equal(tensors["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_clean_temporaries_removes_what_killed_saves_left(tmp_path):
    for name in (".checkpoint.safetensors.tmp-123", ".config.json.tmp-9", "checkpoint.safetensors"):
        (tmp_path / name).write_text("x")
    removed = clean_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.safetensors.tmp-123", ".config.json.tmp-9"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]


@pytest.mark.parametrize("raw, match", [
    ('{"config": {', "has broken JSON in its metadata"),
    ("[1, 2]", "not a JSON object"),
    ('{"step": 3}', "not a run's checkpoint: its metadata lack a config and a step"),
])
def test_broken_metadata_is_a_one_line_error_naming_the_file(tmp_path, raw, match):
    path = tmp_path / "checkpoint.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"straightflow": raw})
    for read in (lambda: load_checkpoint(path), lambda: read_meta(path)):
        with pytest.raises(ValueError, match=match) as err:
            read()
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_meta_reads_the_metadata_without_the_tensors(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"a": torch.zeros(3)}, {**META, "note": "x"})
    assert read_meta(tmp_path / "c.safetensors")["note"] == "x"
