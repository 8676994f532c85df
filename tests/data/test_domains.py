"""The digits domains for unpaired translation (data/domains.py) and image sets as a flow's source."""

import numpy as np
import pytest
import torch

from straightflow.data.domains import DIGITS_DOMAINS, dilate, domain_rows, load_digits_domain
from straightflow.data.image_files import load_digits_images, write_image_files
from straightflow.data.images import ImageSource
from straightflow.data.source import resolve_data, resolve_source
from straightflow.training.build import build_data
from straightflow.training.config import RunConfig, apply_overrides


def test_dilation_grows_a_pixel_into_a_plus_with_arms_at_three_quarters_and_never_removes_ink():
    x = np.zeros((1, 5, 5), dtype=np.uint8)
    x[0, 2, 2], x[0, 0, 4] = 9, 3
    d = dilate(x)
    assert d[0, 2, 2] == 9 and {tuple(p) for p in np.argwhere(d[0] == 6)} == {(1, 2), (3, 2), (2, 1), (2, 3)}
    assert d[0, 0, 3] == 2 and d[0, 1, 4] == 2 and d[0, 0, 4] == 3  # the corner pixel's plus, clipped at the edge
    assert d[0, 1, 1] == 0 and d.sum() == 9 + 4 * 6 + 3 + 2 * 2  # nothing on the diagonals
    assert d.dtype == x.dtype and (d >= x).all()
    with pytest.raises(ValueError, match="integer images"):
        dilate(x.astype(np.float32))


def test_bold_digits_have_thicker_strokes_than_the_same_digits_thin():
    images, _ = load_digits_images()
    bold = dilate(images)
    assert (bold >= images).all()
    ink = lambda a: float((a > 8).mean())  # noqa: E731 - share of pixels above half intensity
    assert ink(bold) > 1.5 * ink(images)
    thin, _ = load_digits_domain("digits-thin")
    thick, _ = load_digits_domain("digits-bold")
    assert thick.astype(float).mean() > 1.3 * thin.astype(float).mean()


def test_the_two_domains_take_disjoint_class_balanced_halves_of_the_digits_and_keep_their_labels():
    images, labels = load_digits_images()
    rows = {spec: domain_rows(spec, labels) for spec in DIGITS_DOMAINS}
    thin, bold = rows["digits-thin"], rows["digits-bold"]
    assert not set(thin) & set(bold) and len(thin) + len(bold) == len(images)
    assert np.abs(np.bincount(labels[thin]) - np.bincount(labels[bold])).max() <= 1  # one class mix
    x, y = load_digits_domain("digits-thin")
    np.testing.assert_array_equal(x, images[thin])
    np.testing.assert_array_equal(y, labels[thin])
    x, y = load_digits_domain("digits-bold")
    np.testing.assert_array_equal(x, dilate(images[bold]))
    np.testing.assert_array_equal(y, labels[bold])
    assert sorted(set(y.tolist())) == list(range(10))


def test_no_written_digit_is_in_both_domains_in_any_split():
    thin, bold = resolve_data("digits-thin"), resolve_data("digits-bold")
    assert isinstance(thin, ImageSource) and thin.shape == (1, 8, 8) and thin.levels == 17
    def rows(levels: np.ndarray) -> set:
        return {r.tobytes() for r in levels.reshape(len(levels), -1)}

    # a thin digit whose dilation is a bold image would be a pair across the domains
    thin_dilated = rows(dilate(torch.cat([thin.train, thin.test]).numpy()))
    assert not thin_dilated & rows(torch.cat([bold.train, bold.test]).numpy())
    assert thin.train.shape[0] + thin.test.shape[0] == 901 and thin.test.shape[0] == 180
    assert thin.test_labels is not None and bold.test_labels is not None


def test_an_image_source_is_read_with_the_datas_options_and_must_have_its_shape(tmp_path):
    for name, side in (("a", 10), ("b", 7)):  # two folders of different native sizes, one data.image_size
        pixels = np.random.default_rng(0).uniform(-1, 1, (3, 3, side, side + 2))
        write_image_files(pixels, [tmp_path / name / f"{i}.png" for i in range(3)])
    cfg = apply_overrides(RunConfig(), {"data.data": f"folder:{tmp_path / 'b'}",
                                        "data.source": f"folder:{tmp_path / 'a'}", "data.image_size": 6})
    data, source = build_data(cfg)
    assert data.shape == source.shape == (3, 6, 6) and source.num_classes == 0
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\) but the data \(3, 6, 6\)"):
        resolve_source("digits-thin", (3, 6, 6))
    with pytest.raises(ValueError, match="dimension 2 but the data has dimension 3"):
        resolve_source("moons", 3)
