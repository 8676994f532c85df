"""`straightflow demo` runs end to end (at a tiny scale) and writes its pictures and metrics table."""

from straightflow.cli.main import main


def test_toy_demo_writes_pictures_and_metrics(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--scale", "0.005", "--n", "200", "--out", str(out), "--no-progress"]) == 0
    for name in ("samples.png", "trajectories_fm.png", "trajectories_meanflow.png", "metrics.txt", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "metrics.txt").read_text()
    assert "noise floor" in table and "meanflow" in table and "dopri5" in table
