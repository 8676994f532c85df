"""Figures: each function writes a real PNG and rejects malformed input with a ValueError."""

import pytest
import torch

from straightflow.plots.figures import plot_loss_curve, plot_sample_panels, plot_samples, plot_trajectories

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def test_plot_samples_writes_a_png_and_returns_its_path(tmp_path):
    data, samples = torch.randn(300, 2, generator=_gen(0)), torch.randn(200, 2, generator=_gen(1)) * 3
    path = plot_samples(samples, data, tmp_path / "figs" / "samples.png", title="moons")
    assert path == tmp_path / "figs" / "samples.png" and _is_png(path)


def test_plot_samples_draws_the_first_two_coordinates_of_higher_dimensional_points(tmp_path):
    path = plot_samples(torch.randn(50, 5), torch.randn(60, 5), tmp_path / "s.png")
    assert _is_png(path)


@pytest.mark.parametrize(
    ("samples", "data"),
    [
        (torch.zeros(10), torch.zeros(10, 2)),
        (torch.zeros(10, 1), torch.zeros(10, 1)),
        (torch.zeros(5, 2), torch.zeros(5, 3)),
    ],
)
def test_plot_samples_rejects_wrong_shapes(tmp_path, samples, data):
    with pytest.raises(ValueError):
        plot_samples(samples, data, tmp_path / "s.png")


def test_plot_trajectories_writes_a_png(tmp_path):
    t = torch.linspace(0, 1, 9)[:, None, None]
    x0, x1 = torch.randn(50, 2, generator=_gen(2)), torch.randn(50, 2, generator=_gen(3))
    trajectory = (1 - t) * x0 + t * x1 + 0.3 * torch.sin(3.14 * t)
    assert _is_png(plot_trajectories(trajectory, tmp_path / "traj.png", n_paths=20, title="paths"))
    assert _is_png(plot_trajectories(trajectory, tmp_path / "back.png", times=torch.linspace(1, 0, 9)))


def test_plot_trajectories_rejects_wrong_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(K\+1, B, 2\)"):
        plot_trajectories(torch.zeros(5, 10, 3), tmp_path / "t.png")
    with pytest.raises(ValueError, match=r"\(K\+1, B, 2\)"):
        plot_trajectories(torch.zeros(1, 10, 2), tmp_path / "t.png")
    with pytest.raises(ValueError, match="times"):
        plot_trajectories(torch.zeros(5, 10, 2), tmp_path / "t.png", times=torch.linspace(0, 1, 4))


def test_plot_loss_curve_writes_a_png_with_smoothing_and_extra_curves(tmp_path):
    steps = list(range(0, 500, 5))
    losses = [1.0 / (1 + s) + 0.01 for s in steps]
    path = plot_loss_curve(steps, losses, tmp_path / "loss.png", extra={"val": [2 * v for v in losses]})
    assert _is_png(path)


def test_plot_loss_curve_accepts_non_positive_losses_via_symlog(tmp_path):
    assert _is_png(plot_loss_curve([0, 1, 2], [0.5, 0.0, -0.1], tmp_path / "loss.png"))


def test_plot_loss_curve_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        plot_loss_curve([0, 1, 2], [1.0, 2.0], tmp_path / "loss.png")
    with pytest.raises(ValueError, match="extra curve 'val'"):
        plot_loss_curve([0, 1], [1.0, 2.0], tmp_path / "loss.png", extra={"val": [1.0]})


def test_plot_sample_panels_writes_one_png_with_a_panel_per_label(tmp_path):
    data = torch.randn(300, 2, generator=_gen(4))
    panels = {"Euler 1": data * 4, "Euler 4": data * 1.5, "dopri5": data + 0.05}
    assert _is_png(plot_sample_panels(panels, data, tmp_path / "panels.png", title="moons"))


def test_plot_sample_panels_rejects_no_panels_and_mismatched_dimensions(tmp_path):
    with pytest.raises(ValueError, match="at least one panel"):
        plot_sample_panels({}, torch.zeros(5, 2), tmp_path / "p.png")
    with pytest.raises(ValueError, match="panel 'a'"):
        plot_sample_panels({"a": torch.zeros(5, 3)}, torch.zeros(5, 2), tmp_path / "p.png")


def test_run_loss_plot_takes_curves_that_appear_midway_and_skips_an_empty_log(tmp_path):
    import json

    from straightflow.plots.figures import plot_run_losses

    assert plot_run_losses(tmp_path) is None  # nothing logged yet
    records = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5, "loss_unweighted": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path = plot_run_losses(tmp_path)
    assert path == tmp_path / "loss.png" and path.stat().st_size > 1000
