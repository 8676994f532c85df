"""Image figures (plots/images.py): grid layout, and the side-by-side translation grid."""

import numpy as np
import pytest
import torch

from straightflow.plots.images import image_grid, plot_translation_grid


def test_image_grid_places_image_i_at_row_i_div_nrow_and_column_i_mod_nrow():
    x = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 1, 2, 2)  # image i is flat at one grey level
    grid = image_grid(x, nrow=3, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 1)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = grid[1 + 3 * r:3 + 3 * r, 1 + 3 * c:3 + 3 * c, 0]
        np.testing.assert_allclose(tile, (x[i, 0].numpy() + 1) / 2)
    assert (grid[4:6, 7:9] == 1).all()  # the empty sixth cell stays white


def test_translation_grid_writes_a_png_for_any_number_of_columns(tmp_path):
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    path = plot_translation_grid({"input": x, "1-RF": -x, "2-RF + distill": x.flip(-1)}, tmp_path / "g.png",
                                 per_row=3, title="t")
    assert path.stat().st_size > 0


def test_translation_grid_refuses_columns_of_different_shapes_and_no_columns(tmp_path):
    with pytest.raises(ValueError, match="one shape"):
        plot_translation_grid({"input": torch.zeros(3, 1, 8, 8), "output": torch.zeros(2, 1, 8, 8)}, tmp_path / "g.png")
    with pytest.raises(ValueError, match="at least one column"):
        plot_translation_grid({}, tmp_path / "g.png")
