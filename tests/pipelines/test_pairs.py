"""Reflow pairs: shards resume after an interruption without duplicates or gaps, keep labels, refuse others."""

import json
import math

import pytest
import torch

import straightflow.pipelines.pairs as pairs_module
from straightflow.data.pairs import MANIFEST, PairSource, load_pairs, shard_path
from straightflow.data.source import GaussianSource
from straightflow.pipelines.pairs import generate_reflow_pairs


def _rotation(x, t, label=None):
    """A curved flow: rotation at unit angular speed."""
    return torch.stack([-x[:, 1], x[:, 0]], dim=1)


# ----------------------------------------------------------------------------------------- pair shards
class Interrupted(Exception):
    pass


def _generate(folder, **kw):
    args = {"velocity": _rotation, "source": GaussianSource(2), "n": 50, "out_dir": folder, "shard_size": 16,
            "solver": "rk4", "steps": 4, "seed": 3}
    return generate_reflow_pairs(**{**args, **kw})


def test_pair_shards_resume_after_an_interruption_without_duplicates_or_gaps(tmp_path, monkeypatch):
    _generate(tmp_path / "whole")
    save = pairs_module.save_shard
    written = []

    def dying(folder, index, *args):
        if len(written) == 2:
            raise Interrupted
        written.append(index)
        return save(folder, index, *args)

    monkeypatch.setattr(pairs_module, "save_shard", dying)
    with pytest.raises(Interrupted):
        _generate(tmp_path / "broken")
    assert not (tmp_path / "broken" / MANIFEST).exists()  # an interrupted folder is not loadable
    with pytest.raises(ValueError, match="did not finish"):
        load_pairs(tmp_path / "broken")
    (tmp_path / "broken" / ".pairs-00002.safetensors.tmp-999").write_bytes(b"half a shard")  # a killed write
    redone = []

    def counting(folder, index, *args):
        redone.append(index)
        return save(folder, index, *args)

    monkeypatch.setattr(pairs_module, "save_shard", counting)
    _generate(tmp_path / "broken")
    assert written == [0, 1] and redone == [2, 3]  # only the missing shards were made
    assert not list((tmp_path / "broken").glob(".*tmp*"))
    whole, resumed = load_pairs(tmp_path / "whole"), load_pairs(tmp_path / "broken")
    assert whole[0].shape == (50, 2) and whole[2] is None
    for a, b in zip(whole[:2], resumed[:2], strict=True):
        assert torch.equal(a, b)
    assert torch.unique(whole[0], dim=0).shape[0] == 50  # no duplicated rows
    # x1 is the rk4 solution of the rotation: x0 turned by one radian
    c, s = math.cos(1.0), math.sin(1.0)
    turned = torch.stack([c * whole[0][:, 0] - s * whole[0][:, 1], s * whole[0][:, 0] + c * whole[0][:, 1]], 1)
    torch.testing.assert_close(whole[1], turned, atol=1e-3, rtol=0)


def test_pairs_keep_labels_and_refuse_other_settings(tmp_path):
    def labels(m, g):
        return torch.randint(0, 3, (m,), generator=g)

    seen = []

    def conditional(x, t, label):
        seen.append(label)
        return torch.zeros_like(x) + label[:, None].to(x.dtype)  # x1 = x0 + label

    _generate(tmp_path, velocity=conditional, label_sampler=labels)
    x0, x1, label = load_pairs(tmp_path)
    assert label.shape == (50,) and label.dtype == torch.long
    torch.testing.assert_close(x1, x0 + label[:, None].float())
    assert PairSource(x0, x1, label).sample(8, torch.Generator()).label.shape == (8,)
    with pytest.raises(ValueError, match="other settings.*seed"):
        _generate(tmp_path, velocity=conditional, label_sampler=labels, seed=4)


def test_load_pairs_names_missing_corrupt_and_mismatched_shards(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_pairs(tmp_path / "nowhere")
    _generate(tmp_path / "p")
    shard_path(tmp_path / "p", 1).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="pairs-00001.safetensors is corrupt"):
        load_pairs(tmp_path / "p")
    shard_path(tmp_path / "p", 1).unlink()
    with pytest.raises(ValueError, match="pairs-00001.safetensors is missing"):
        load_pairs(tmp_path / "p")
    _generate(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / MANIFEST).read_text())
    (tmp_path / "q" / MANIFEST).write_text(json.dumps({**manifest, "n": 60, "shards": 4}))
    with pytest.raises(ValueError, match="pairs-00003.safetensors has x0 of shape"):
        load_pairs(tmp_path / "q")
    for bad in (0, -5):
        with pytest.raises(ValueError, match="number of pairs must be an int >= 1"):
            _generate(tmp_path / "r", n=bad)
