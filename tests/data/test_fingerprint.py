"""Data fingerprints: paths become absolute, files hash their bytes, folders their manifest, and a check refuses
missing or changed data in one line."""

import hashlib

import numpy as np
import pytest

from straightflow.data.fingerprint import absolute_spec, check_record, data_record, folder_sha256


def test_absolute_spec_makes_files_and_folders_absolute_and_keeps_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("pts.npy") == str(tmp_path / "pts.npy")
    assert absolute_spec("sub/../x.CSV") == str(tmp_path / "x.CSV")
    assert absolute_spec("folder:imgs") == f"folder:{tmp_path / 'imgs'}"
    for name in ("gaussian", "moons", "digits", "cifar10", "/abs/pts.npy"):
        assert absolute_spec(name) == name


def test_records_hash_a_files_bytes_and_name_the_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("pts.npy", np.zeros((4, 2), np.float32))
    record = data_record("pts.npy")
    assert record == {"spec": str(tmp_path / "pts.npy"), "kind": "file", "path": str(tmp_path / "pts.npy"),
                      "sha256": hashlib.sha256((tmp_path / "pts.npy").read_bytes()).hexdigest()}
    assert data_record("gaussian") == {"spec": "gaussian", "kind": "gaussian"}
    assert data_record("moons")["kind"] == "toy" and "path" not in data_record("digits")
    assert data_record("mnist", "raw")["path"] == str(tmp_path / "raw")  # read from data_dir: the folder only


def test_check_refuses_missing_and_changed_files_in_one_line(tmp_path):
    np.save(tmp_path / "pts.npy", np.zeros((4, 2), np.float32))
    record = data_record(str(tmp_path / "pts.npy"))
    check_record(record)  # unchanged: nothing to say
    np.save(tmp_path / "pts.npy", np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"^data file .*pts.npy changed since the run was trained \(sha256 "
                       r"[0-9a-f]{12}\.\.\. then, [0-9a-f]{12}\.\.\. now\): pass --data to score against another"):
        check_record(record)
    (tmp_path / "pts.npy").unlink()
    with pytest.raises(ValueError, match=r"^source file .*pts.npy not found; restore it, or pass x0"):
        check_record(record, "source")
    with pytest.raises(ValueError, match="unknown data role 'target'"):
        check_record(record, "target")


def test_a_folder_manifest_changes_when_an_image_is_added_renamed_or_resized_but_not_for_other_files(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"12345")
    before = folder_sha256(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    assert folder_sha256(tmp_path) == before
    (tmp_path / "cats" / "a.png").write_bytes(b"123456")
    resized = folder_sha256(tmp_path)
    (tmp_path / "cats" / "a.png").rename(tmp_path / "cats" / "b.png")
    renamed = folder_sha256(tmp_path)
    assert len({before, resized, renamed}) == 3
    record = data_record(f"folder:{tmp_path}")
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "c.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="data folder .* changed since the run was trained"):
        check_record(record)
