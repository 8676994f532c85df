"""Unpaired image-to-image translation through the command line, on tiny runs: train --source IMAGESET,
translate a .npy and a folder, reflow and distill from an image source, eval of a translation run."""

import json
import re

import numpy as np
import pytest
from safetensors.torch import load_file

from straightflow.cli.main import main
from straightflow.data.image_files import write_image_files
from straightflow.data.source import resolve_data

TINY = ["--no-progress", "--set", "model.channels=8", "--set", "model.channel_mult=1,2", "--set",
        "model.n_frequencies=4", "--set", "train.batch_size=16", "--set", "train.log_every=5", "--set",
        "data.prefetch=false"]
PAIRS = ["--solver", "euler", "--solver-steps", "2", "--shard-size", "16", "--no-progress", "--no-plots"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    assert main(["train", "--source", "digits-thin", "--data", "digits-bold", "--steps", "10", "--out",
                 str(root / "rf1"), "--no-plots", *TINY]) == 0
    return root


def _inputs(n: int) -> np.ndarray:
    """n thin test digits, quantised to 8-bit levels (2k/255 - 1) so that PNG files hold them exactly."""
    x = resolve_data("digits-thin").heldout(n).numpy()
    return np.rint((x + 1) * 127.5) / 127.5 - 1


def test_translate_npy_writes_translations_pngs_and_an_input_output_grid(runs, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _inputs(7)[:, 0])  # (N, H, W): grey runs take it too
    out = tmp_path / "out"
    assert main(["translate", str(runs / "rf1"), "--input", str(tmp_path / "x.npy"), "--steps", "3",
                 "--out", str(out)]) == 0
    y = np.load(out / "translated.npy")
    assert y.shape == (7, 1, 8, 8) and y.min() >= -1 and y.max() <= 1
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:05d}.png" for i in range(7)]
    assert (out / "grid.png").stat().st_size > 0
    assert "NFE 3" in capsys.readouterr().out


def test_a_folder_of_pngs_translates_like_the_same_pixels_in_a_npy(runs, tmp_path):
    x = _inputs(5)
    write_image_files(np.repeat(x, 3, axis=1), [tmp_path / "pngs" / f"d{i}.png" for i in range(5)])  # RGB files
    np.save(tmp_path / "x.npy", x)
    for name, source in (("a", tmp_path / "pngs"), ("b", tmp_path / "x.npy")):
        assert main(["translate", str(runs / "rf1"), "--input", str(source), "--solver", "heun", "--steps", "2",
                     "--out", str(tmp_path / name)]) == 0
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == [f"d{i}.png" for i in range(5)]
    np.testing.assert_allclose(np.load(tmp_path / "a" / "translated.npy"), np.load(tmp_path / "b" / "translated.npy"),
                               atol=1e-5)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8, 9), np.float32), "holds 8x9 images, but the run takes 8x8"),
        (np.zeros((4, 3, 8, 8), np.float32), "3 channels, but the run takes 1"),
        (np.full((4, 1, 8, 8), 255, np.float32), r"pixels in \[255, 255\]; translate takes the model's pixel space"),
        (np.zeros((4,), np.float32), r"shape \(4,\); translate takes \(N, C, H, W\)"),
    ],
)
def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys, array, message):
    np.save(tmp_path / "bad.npy", array)
    assert main(["translate", str(runs / "rf1"), "--input", str(tmp_path / "bad.npy"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_a_run_from_noise_cannot_translate(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--steps", "2", "--out", str(tmp_path / "noise"), "--no-plots",
                 *TINY]) == 0
    np.save(tmp_path / "x.npy", _inputs(2))
    assert main(["translate", str(tmp_path / "noise"), "--input", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "needs a run trained with an image set as source" in capsys.readouterr().err


def test_reflow_and_distill_draw_x0_from_the_image_source_and_translate_in_one_step(runs, tmp_path):
    rf2, d1 = tmp_path / "rf2", tmp_path / "d1"
    assert main(["reflow", str(runs / "rf1"), "--pairs", "24", "--out", str(rf2), "--steps", "3", *PAIRS,
                 *TINY]) == 0
    x0 = load_file(str(rf2 / "pairs" / "pairs-00000.safetensors"))["x0"]
    thin = resolve_data("digits-thin")
    train_rows = {r.tobytes() for r in thin.to_pixels(thin.train).numpy()}
    assert x0.shape == (16, 1, 8, 8) and all(r.tobytes() in train_rows for r in x0.numpy())  # training rows only
    assert main(["distill", str(rf2), "--out", str(d1), "--pairs", "16", "--steps", "3", *PAIRS, *TINY]) == 0
    config = json.loads((d1 / "config.json").read_text())["data"]
    assert (config["source"], config["data"]) == ("digits-thin", "digits-bold")
    np.save(tmp_path / "x.npy", _inputs(3))
    assert main(["translate", str(d1), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")]) == 0
    assert np.load(tmp_path / "o" / "translated.npy").shape == (3, 1, 8, 8)  # default: its one Euler step


def test_eval_of_a_translation_run_scores_held_out_source_images(runs, monkeypatch, tmp_path, capsys):
    import straightflow.metrics.images as im

    monkeypatch.setattr(im, "DEFAULT_FEATURE_STEPS", 10)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = tmp_path / "eval.json"
    assert main(["eval", str(runs / "rf1"), "--n", "40", "--solver", "euler", "--steps", "1,2", "--no-progress",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["source"], report["data"], report["n"]) == ("digits-thin", "digits-bold", 40)
    inputs, *rows = report["rows"]
    assert inputs["name"] == "inputs" and inputs["transport_cost"] == 0
    assert [(r["solver"], r["steps"]) for r in rows] == [("euler", 1), ("euler", 2)]
    for r in rows:
        assert 0 <= r["class_accuracy"] <= 1 and r["feature_fid"] >= 0 and r["transport_cost"] > 0
    assert "transport cost" in capsys.readouterr().out
    assert report["floor_fid"] > 0 and report["m"] == 40
