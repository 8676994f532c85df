"""`straightflow demo` runs end to end (at a tiny scale) and writes its pictures and metrics table (text, CSV,
Markdown)."""

from straightflow.cli.main import main


def test_toy_demo_writes_pictures_and_metrics(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--scale", "0.005", "--n", "200", "--out", str(out), "--no-progress"]) == 0
    for name in ("samples.png", "trajectories_fm.png", "trajectories_meanflow.png", "metrics.txt", "metrics.json",
                 "metrics.csv", "metrics.md"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "metrics.txt").read_text()
    assert "noise floor" in table and "meanflow" in table and "dopri5" in table
    rows = [ln.split(",")[:2] for ln in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == [["fm", "held-out"], ["fm", "euler"], ["fm", "euler"], ["fm", "euler"], ["fm", "dopri5"],
                    ["meanflow", "held-out"], ["meanflow", "meanflow"], ["meanflow", "meanflow"]]


def test_translate_demo_writes_the_three_runs_a_grid_and_a_table_of_them(tmp_path, monkeypatch):
    import straightflow.metrics.images as im

    monkeypatch.setattr(im, "DEFAULT_FEATURE_STEPS", 10)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = tmp_path / "demo"
    assert main(["demo", "translate", "--scale", "0.001", "--n", "40", "--out", str(out), "--no-progress"]) == 0
    for name in ("grid.png", "metrics.txt", "metrics.json", "metrics.csv", "metrics.md", "1rf/checkpoint.safetensors",
                 "2rf/pairs/pairs.json", "2rf-distill/checkpoint.safetensors"):
        assert (out / name).stat().st_size > 0, name
    rows = [ln.split(",")[:3] for ln in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == [["held-out target", "", ""], ["inputs", "-", "0"], ["1-RF", "euler", "1"], ["1-RF", "rk4", "16"],
                    ["2-RF", "euler", "1"], ["2-RF", "rk4", "16"], ["2-RF + distill", "euler", "1"]]
