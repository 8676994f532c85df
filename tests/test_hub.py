"""Sharing runs: a pretrained folder samples exactly like the run it came from; the Hub round trip (offline,
against a local folder standing in for the Hub) gives the same run back."""

import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from straightflow import from_pretrained, push_to_hub, save_pretrained
from straightflow.runs import load_run, sample_run
from straightflow.training.checkpoint import CHECKPOINT, load_checkpoint
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.trainer import Trainer

TINY = {"model.width": 16, "model.depth": 1, "train.batch_size": 32, "train.steps": 20, "train.log_every": 10,
        "train.device": "cpu"}


@pytest.fixture(scope="module", params=["fm", "meanflow"])
def run_dir(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / request.param
    cfg = apply_overrides(RunConfig(), {**TINY, "method.name": request.param, "data.data": "moons"})
    Trainer(cfg, out, progress=False).fit()
    return out


def _same_samples(a, b):
    for solver, steps in (("euler", 3), ("dopri5", 1)):
        xa = sample_run(a, 32, solver=solver, steps=steps, seed=5).x
        torch.testing.assert_close(sample_run(b, 32, solver=solver, steps=steps, seed=5).x, xa, rtol=0, atol=0)


def test_save_and_from_pretrained_give_identical_samples_and_drop_the_training_state(run_dir, tmp_path, monkeypatch):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    run = load_run(copy, device="cpu")
    folder = save_pretrained(run, tmp_path / "shared")
    shutil.rmtree(copy)  # the shared folder stands alone
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", CHECKPOINT, "config.json"]
    tensors, meta = load_checkpoint(folder / CHECKPOINT)
    assert all(k.startswith("ema.") for k in tensors)  # no raw weights, no optimizer state
    assert meta["shape"] == [2] and meta["source"]["kind"] == "gaussian" and meta["step"] == 20
    assert meta["pretrained"]["weights"] == "ema"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: straightflow\n") and "from_pretrained" in card
    monkeypatch.chdir(tmp_path / "shared")  # from another working directory
    _same_samples(run, from_pretrained(folder, device="cpu"))
    with pytest.raises(ValueError, match="is the run itself"):
        save_pretrained(load_run(run_dir, device="cpu"), run_dir)


class _LocalHub:
    """The three calls straightflow makes of huggingface_hub, served from a local folder (no network)."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []
        hub = self

        class HfApi:
            def __init__(self, token=None):
                hub.calls.append(("HfApi", token))

            def create_repo(self, repo_id, private=False, exist_ok=False, **_):
                (hub.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
                hub.calls.append(("create_repo", repo_id, private))

            def upload_folder(self, *, repo_id, folder_path, commit_message=None, **_):
                shutil.copytree(folder_path, hub.root / repo_id, dirs_exist_ok=True)
                hub.calls.append(("upload_folder", repo_id, commit_message))
                return types.SimpleNamespace(commit_url=f"https://hub.local/{repo_id}/commit/1")

        def snapshot_download(repo_id, *, revision=None, token=None, allow_patterns=None, **_):
            hub.calls.append(("snapshot_download", repo_id, revision, tuple(allow_patterns or ())))
            if not (hub.root / repo_id).is_dir():
                raise FileNotFoundError(f"repository {repo_id} not found")
            cache = hub.root.parent / "cache" / repo_id
            shutil.copytree(hub.root / repo_id, cache, dirs_exist_ok=True)
            return str(cache)

        self.module = types.ModuleType("huggingface_hub")
        self.module.HfApi, self.module.snapshot_download = HfApi, snapshot_download


def test_push_to_hub_then_from_pretrained_by_repo_id_round_trips_offline(run_dir, tmp_path, monkeypatch):
    hub = _LocalHub(tmp_path / "hub")
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub.module)
    run = load_run(run_dir, device="cpu")
    url = push_to_hub(run, "someone/tiny-flow", private=True, token="t0ken")
    assert url == "https://hub.local/someone/tiny-flow/commit/1"
    assert (tmp_path / "hub" / "someone" / "tiny-flow" / CHECKPOINT).is_file()
    monkeypatch.chdir(tmp_path)  # no folder named someone/tiny-flow here: the name is a repo id
    pulled = from_pretrained("someone/tiny-flow", device="cpu", revision="main")
    assert ("snapshot_download", "someone/tiny-flow", "main", ("checkpoint.safetensors", "config.json", "README.md")) \
        in hub.calls
    assert ("create_repo", "someone/tiny-flow", True) in hub.calls
    _same_samples(run, pulled)


def test_hub_calls_name_the_missing_extra_and_bad_names(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError, match=r"pip install 'straightflow\[hub\]'"):
        from_pretrained("someone/tiny-flow")
    with pytest.raises(ValueError, match="no run folder at no/such/run, and it is not a Hub repo id"):
        from_pretrained("no/such/run")
    with pytest.raises(ValueError, match="repo id must look like user/name, got 'tiny'"):
        push_to_hub(load_run(run_dir, device="cpu"), "tiny")
