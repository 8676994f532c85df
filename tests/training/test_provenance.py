"""What a run records at its start: every path in its config absolute, the shape and the data's records."""

from straightflow.data.source import resolve_data
from straightflow.training.config import RunConfig, apply_overrides
from straightflow.training.provenance import absolute_paths, run_provenance


def test_absolute_paths_resolve_every_path_against_the_working_directory_and_keep_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = apply_overrides(RunConfig(), {"data.data": "x.npy", "data.source": "y.csv", "data.pairs": "p",
                                        "train.init_from": "parent", "method.teacher": "teacher"})
    out = absolute_paths(cfg)
    assert (out.data.data, out.data.source, out.data.pairs) == (str(tmp_path / "x.npy"), str(tmp_path / "y.csv"),
                                                                str(tmp_path / "p"))
    assert (out.train.init_from, out.method.teacher) == (str(tmp_path / "parent"), str(tmp_path / "teacher"))
    assert absolute_paths(out) == out
    names = absolute_paths(RunConfig())
    assert (names.data.data, names.data.source, names.data.data_dir, names.train.init_from) == ("moons", "gaussian",
                                                                                                "", "")
    monkeypatch.setenv("STRAIGHTFLOW_DATA", "store")
    cifar = absolute_paths(apply_overrides(RunConfig(), {"data.data": "cifar10"}))
    assert cifar.data.data_dir == str(tmp_path / "store")  # the default folder, fixed when the run starts


def test_run_provenance_records_shape_data_source_and_class_names():
    cfg = apply_overrides(RunConfig(), {"data.data": "digits", "data.conditional": True})
    meta = run_provenance(cfg, resolve_data("digits", conditional=True))
    assert meta["shape"] == [1, 8, 8]
    assert meta["data"] == {"spec": "digits", "kind": "images"}
    assert meta["source"] == {"spec": "gaussian", "kind": "gaussian"}
    assert meta["class_names"] == [str(k) for k in range(10)]
