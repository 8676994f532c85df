"""Translation inputs (pipelines/translate.py): folders of image files and .npy arrays into the model's space."""

import numpy as np
import pytest
from PIL import Image

from straightflow.data.image_files import read_image_folder, write_image_files
from straightflow.pipelines.translate import read_translation_inputs


def test_pngs_written_from_pixels_read_back_as_their_8bit_levels(tmp_path):
    x = np.random.default_rng(0).uniform(-1.2, 1.2, (4, 3, 5, 5)).astype(np.float32)
    write_image_files(x, [tmp_path / f"{i}.png" for i in range(4)])
    levels, labels, _ = read_image_folder(tmp_path, size=5)
    np.testing.assert_array_equal(levels, np.rint((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8))
    assert labels is None


def test_a_grey_run_reads_colour_files_as_their_luma_and_an_rgb_run_keeps_the_colours(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    grey, names = read_translation_inputs(tmp_path, (1, 4, 4))
    luma = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert grey.shape == (1, 1, 4, 4) and names == ["c.png"]
    np.testing.assert_allclose(grey.numpy(), luma / 127.5 - 1, atol=1e-6)
    colour, _ = read_translation_inputs(tmp_path, (3, 4, 4))
    np.testing.assert_allclose(colour[0, :, 0, 0].numpy(), np.array([200, 100, 50]) / 127.5 - 1, atol=1e-6)


def test_class_subfolders_keep_their_relative_names_and_files_are_resized_to_the_run(tmp_path):
    for cls in ("cat", "dog"):
        write_image_files(np.zeros((2, 3, 12, 16)), [tmp_path / cls / f"{i}.jpg" for i in range(2)])
    x, names = read_translation_inputs(tmp_path, (3, 6, 6))
    assert x.shape == (4, 3, 6, 6)
    assert names == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "empty").mkdir(), "holds no images"),
        (lambda p: (p / "x.txt").write_text("1"), "must be a .npy file or a folder"),
        (lambda p: np.save(p / "x.npy", np.full((2, 1, 4, 4), np.nan, np.float32)), "NaN or infinite"),
        (lambda p: np.save(p / "x.npy", np.zeros((0, 1, 4, 4), np.float32)), "N >= 1"),
        (lambda p: np.save(p / "x.npy", np.array(["a", "b"])), "translate takes"),
    ],
)
def test_unreadable_inputs_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    target = next(p for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=message) as err:
        read_translation_inputs(target, (1, 4, 4))
    assert "\n" not in str(err.value)
