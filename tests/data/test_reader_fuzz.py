"""Property-based fuzz of the file readers (.npy, .csv, IDX, CIFAR-10 batches): whatever the bytes, a reader
returns its array or raises a one-line ValueError; never another exception, never a traceback."""

import gzip
import io
import os
import pickle
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from straightflow.data.files import load_vectors
from straightflow.data.image_files import read_cifar10, read_idx

# STRAIGHTFLOW_FUZZ_EXAMPLES=2000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("STRAIGHTFLOW_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _cifar_bytes(n: int = 2) -> bytes:
    batch = {b"data": np.zeros((n, 3072), np.uint8), b"labels": list(range(n))}
    return pickle.dumps(batch, protocol=2)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """`seed` with a few bytes overwritten, a prefix cut off, or random bytes appended."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    data = data[:cut] if draw(st.booleans()) else data
    return bytes(data) + draw(st.binary(max_size=16))


def _assert_one_line_error_or_result(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except ValueError as e:
            assert "\n" not in str(e) and str(e), repr(e)


NPY_SEEDS = [_npy_bytes(np.arange(12, dtype=np.float32).reshape(4, 3)), _npy_bytes(np.arange(5)),
             _npy_bytes(np.zeros((2, 2), dtype=[("a", "f4")]))]


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), *[mutated(s) for s in NPY_SEEDS]))
def test_npy_reader_gives_an_array_or_a_one_line_error(tmp_path, data):
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    _assert_one_line_error_or_result(lambda: load_vectors(path))


CSV_CELLS = st.sampled_from(["1", "0", "-2.5", "1e6", "", "nan", "inf", "x", "Unnamed: 0", "1e999", '"a,b"', " 3 "])


@FUZZ
@given(rows=st.lists(st.lists(CSV_CELLS, min_size=0, max_size=4), max_size=6),
       noise=st.text(max_size=20))
def test_csv_reader_gives_an_array_or_a_one_line_error(tmp_path, rows, noise):
    path = tmp_path / "x.csv"
    path.write_text("\n".join(",".join(r) for r in rows) + noise)
    _assert_one_line_error_or_result(lambda: load_vectors(path))


@FUZZ
@given(data=st.binary(max_size=300))
def test_csv_reader_takes_any_bytes_with_a_one_line_error(tmp_path, data):
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    _assert_one_line_error_or_result(lambda: load_vectors(path))


IDX_SEEDS = [_idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
             _idx_bytes(np.arange(6, dtype=np.int32), 0x0C), gzip.compress(_idx_bytes(np.arange(8, dtype=np.uint8)))]


@FUZZ
@given(data=st.one_of(st.binary(max_size=64), *[mutated(s) for s in IDX_SEEDS]))
def test_idx_reader_gives_an_array_or_a_one_line_error(tmp_path, data):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    _assert_one_line_error_or_result(lambda: read_idx(path))


@FUZZ
@given(data=st.one_of(st.binary(max_size=64), mutated(_cifar_bytes())))
def test_cifar_reader_gives_images_or_a_one_line_error(tmp_path, data):
    (tmp_path / "test_batch").write_bytes(data)
    _assert_one_line_error_or_result(lambda: read_cifar10(tmp_path, train=False))


@pytest.mark.parametrize("payload", [
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [[1, 2], [3]]},  # ragged labels
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]},  # text labels
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [2**70, 1]},  # labels beyond int64
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": None},  # no labels at all
    {b"data": np.zeros((2, 3072), np.uint8), 1: 2},  # keys of mixed kinds, without labels
])
def test_cifar_reader_refuses_well_formed_pickles_of_the_wrong_content_in_one_line(tmp_path, payload):
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="test_batch") as err:
        read_cifar10(tmp_path, train=False)
    assert "\n" not in str(err.value)


def test_an_image_declaring_a_decompression_bomb_is_a_one_line_error(tmp_path):
    import zlib

    from straightflow.data.image_files import read_image_folder

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 20000 x 20000 RGB: 400 M pixels
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(bomb)
    with pytest.raises(ValueError, match="cannot read image .*a.png .*DecompressionBombError") as err:
        read_image_folder(tmp_path, size=8)
    assert "\n" not in str(err.value)
