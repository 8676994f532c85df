"""Two tiny runs for the report tests: flow matching with snapshots and an eval.json, MeanFlow without."""

import pytest

from straightflow.cli.main import main

TINY = ["--data", "moons", "--steps", "20", "--no-progress", "--no-plots", "--set", "model.width=16",
        "--set", "model.depth=1", "--set", "train.batch_size=32", "--set", "train.log_every=10"]


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-runs")
    fm, mf = root / "fm", root / "mf"
    assert main(["train", "--method", "fm", "--out", str(fm), "--sample-every", "10", *TINY]) == 0
    assert main(["eval", str(fm), "--n", "200", "--solver", "euler", "--steps", "1,2", "--no-progress"]) == 0
    assert main(["train", "--method", "meanflow", "--out", str(mf), *TINY]) == 0
    return fm, mf


@pytest.fixture(scope="session")
def report_file(report_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", *map(str, report_runs), "--nfe", "1,2", "--n", "200", "--out", str(out),
                 "--no-progress"]) == 0
    return out
