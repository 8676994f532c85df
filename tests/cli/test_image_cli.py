"""Images through the command line on tiny runs: train --conditional, sample --class, eval, guidance."""

import json

import numpy as np
import pytest
import torch

from straightflow.cli.main import main
from straightflow.runs import load_run, sample_run

TINY = ["--data", "digits", "--conditional", "--steps", "12", "--no-progress", "--no-plots",
        "--set", "model.channels=8", "--set", "model.channel_mult=1,2", "--set", "model.n_frequencies=4",
        "--set", "train.batch_size=16", "--set", "train.log_every=6", "--set", "data.prefetch=false"]


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "fm"
    assert main(["train", "--method", "fm", "--out", str(out), *TINY]) == 0
    return out


def test_sample_class_writes_images_in_minus_one_one_and_a_grid(fm_run, tmp_path):
    out = tmp_path / "s.npy"
    assert main(["sample", str(fm_run), "--n", "12", "--class", "3", "--guidance", "2", "--solver", "euler",
                 "--steps", "2", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (12, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert out.with_suffix(".png").stat().st_size > 0


def test_guidance_weight_zero_is_unguided_and_one_is_conditional(fm_run):
    run = load_run(fm_run, device="cpu")  # CPU perturbations below; tolerances of fp32 without TF32
    with torch.no_grad():  # make the label matter: the fresh output layer is zero
        for p in run.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    kw = {"solver": "euler", "steps": 3, "seed": 1}
    unguided = sample_run(run, 6, label=None, **kw).x
    torch.testing.assert_close(sample_run(run, 6, label=4, guidance=0.0, **kw).x, unguided, rtol=1e-5, atol=1e-5)
    conditional = sample_run(run, 6, label=4, **kw).x
    assert not torch.allclose(conditional, unguided)
    torch.testing.assert_close(sample_run(run, 6, label=4, guidance=1.0 + 1e-12, **kw).x, conditional,
                               rtol=1e-5, atol=1e-5)


def test_eval_of_an_image_run_reports_feature_fid_precision_recall_accuracy(fm_run, monkeypatch, tmp_path, capsys):
    import straightflow.metrics.images as im

    monkeypatch.setattr(im, "DEFAULT_FEATURE_STEPS", 10)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["eval", str(fm_run), "--n", "40", "--solver", "euler", "--steps", "1,2"]) == 0
    report = json.loads((fm_run / "eval.json").read_text())
    assert [(r["solver"], r["steps"]) for r in report["rows"]] == [("euler", 1), ("euler", 2)]
    for row in report["rows"]:
        assert row["feature_fid"] >= 0 and 0 <= row["precision"] <= 1 and 0 <= row["class_accuracy"] <= 1
    out = capsys.readouterr().out
    assert "feature-FID" in out and "held-out" in out  # the table's floor row
    assert (fm_run / "eval.csv").read_text().splitlines()[1].startswith("held-out,")
    assert any((tmp_path / "straightflow").iterdir())


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_meanflow_trains_and_samples_images_with_either_backbone(arch, tmp_path):
    out = tmp_path / arch
    extra = ["--set", "model.width=16", "--set", "model.depth=1", "--set", "model.heads=2"] if arch == "dit" else []
    assert main(["train", "--method", "meanflow", "--arch", arch, "--out", str(out), *TINY, *extra,
                 "--set", "method.jvp=func"]) == 0
    assert main(["sample", str(out), "--n", "5", "--class", "7", "--steps", "1", "--out", str(tmp_path / "m.npy")]) == 0
    assert np.load(tmp_path / "m.npy").shape == (5, 1, 8, 8)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "moons", "--conditional", "--out", "X"], "has no class labels"),
        (["train", "--data", "digits", "--arch", "mlp", "--out", "X"], "model.arch=mlp takes vectors"),
        (["train", "--data", "mnist", "--data-dir", "/nonexistent", "--out", "X"], "not found"),
        (["train", "--data", "digits", "--set", "model.channel_mult=1,2,2,2,2", "--out", "X"], "not divisible"),
    ],
)
def test_bad_image_input_is_a_one_line_error(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / "X") if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_demo_digits_writes_grids_metrics_and_curve(monkeypatch, tmp_path):
    import straightflow.cli.demo_digits as demo
    import straightflow.metrics.images as im

    monkeypatch.setattr(im, "DEFAULT_FEATURE_STEPS", 10)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(demo.DIGITS_COMMON, "model.channels", 8)
    monkeypatch.setitem(demo.DIGITS_COMMON, "train.batch_size", 16)
    monkeypatch.setitem(demo.DIGITS_RUNS, "meanflow", (demo.DIGITS_RUNS["meanflow"][0], [("meanflow", 1)]))
    monkeypatch.setitem(demo.DIGITS_RUNS, "fm", (demo.DIGITS_RUNS["fm"][0], [("euler", 2)]))
    out = tmp_path / "demo"
    assert main(["demo", "digits", "--scale", "0.001", "--n", "30", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary) == {"meanflow", "fm"}
    assert [r["nfe"] for r in summary["meanflow"]["rows"]] == [1]
    for name in ("grid_meanflow_meanflow1.png", "grid_fm_euler2.png", "quality_vs_nfe.png", "metrics.txt"):
        assert (out / name).stat().st_size > 0, name


def test_rectified_flow_reflows_and_distils_images_through_the_cli(fm_run, tmp_path):
    pairs = ["--pairs", "24", "--solver", "euler", "--solver-steps", "2", "--steps", "4", "--no-progress",
             "--no-plots"]
    assert main(["reflow", str(fm_run), "--out", str(tmp_path / "2rf"), *pairs]) == 0
    assert main(["distill", str(tmp_path / "2rf"), "--out", str(tmp_path / "1step"), *pairs]) == 0
    out = tmp_path / "s.npy"
    assert main(["sample", str(tmp_path / "1step"), "--n", "6", "--class", "2", "--solver", "euler", "--steps", "1",
                 "--out", str(out)]) == 0
    assert np.load(out).shape == (6, 1, 8, 8)
