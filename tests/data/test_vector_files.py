"""Vector files: exact round trips through .npy and .csv, and one-line errors that name the file."""

import numpy as np
import pytest
import torch

from straightflow.data.files import load_vectors, save_vectors


def _values() -> torch.Tensor:
    # Values with long float32 mantissas: a lossy text format would change them.
    rows = [[0.1, -2.5e-7, 3.0], [1 / 3, 123456.78, -0.0], [7.0, 8.5, -9.25]]
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_save_then_load_returns_the_same_float32_values_bit_for_bit(tmp_path, suffix):
    path = save_vectors(tmp_path / "sub" / f"x{suffix}", _values())
    loaded = load_vectors(path)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, _values())


def test_csv_header_of_names_is_skipped_and_blank_lines_ignored(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('"x", y\n1, 2\n\n3.5,-4e1\n')
    assert torch.equal(load_vectors(path), torch.tensor([[1.0, 2.0], [3.5, -40.0]]))


def test_npy_of_integers_or_float64_loads_as_float32(tmp_path):
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))
    loaded = load_vectors(tmp_path / "i.npy")
    assert loaded.dtype == torch.float32 and torch.equal(loaded, torch.arange(6.0).reshape(3, 2))


def _error(path) -> str:
    with pytest.raises(ValueError) as info:
        load_vectors(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file_is_named(tmp_path):
    assert "not found" in _error(tmp_path / "none.npy")


def test_unsupported_suffix_lists_the_allowed_ones(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1,2\n")
    assert ".npy, .csv" in _error(path)


def test_array_of_three_dimensions_reports_its_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 5)))
    assert "expected an array of shape (N, D), got (3, 4, 5)" in _error(tmp_path / "x.npy")


def test_one_dimensional_array_reports_its_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(4))
    assert "(4,)" in _error(tmp_path / "x.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_with_their_position(tmp_path, bad):
    array = np.ones((4, 2))
    array[2, 1] = bad
    np.save(tmp_path / "x.npy", array)
    assert "row 2, column 1" in _error(tmp_path / "x.npy")


def test_float64_beyond_float32_range_is_rejected_as_non_finite(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1e300, 0.0]]))
    assert "non-finite" in _error(tmp_path / "x.npy")


def test_nan_in_csv_is_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,2\nnan,3\n")
    assert "non-finite" in _error(path)


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n"])
def test_csv_without_data_rows_is_empty(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text)
    assert "no data rows" in _error(path)


def test_npy_with_zero_rows_or_empty_file_is_rejected(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 2)))
    assert "empty" in _error(tmp_path / "x.npy")
    (tmp_path / "y.npy").write_bytes(b"")
    assert "cannot read" in _error(tmp_path / "y.npy")


def test_non_numeric_csv_cell_names_line_column_and_value(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("x,y\n1,2\n3,abc\n")
    assert "non-numeric value 'abc' at line 3, column 2" in _error(path)


def test_ragged_csv_rows_are_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,2\n3,4,5\n")
    assert "line 2" in _error(path)


def test_save_rejects_non_matrix_and_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        save_vectors(tmp_path / "x.npy", torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="'.pt'"):
        save_vectors(tmp_path / "x.pt", torch.zeros(2, 2))


# ------------------------------------------------------------------------------------ what pandas writes
def test_a_pandas_index_column_is_dropped_with_a_warning_not_read_as_a_feature(tmp_path):
    path = tmp_path / "df.csv"  # DataFrame.to_csv(): an unnamed index column first
    path.write_text(",x,y\n0,1.5,2.5\n1,3.5,4.5\n2,0.25,0.5\n")
    with pytest.warns(UserWarning, match="pandas index, not a feature: dropped"):
        loaded = load_vectors(path)
    assert torch.equal(loaded, torch.tensor([[1.5, 2.5], [3.5, 4.5], [0.25, 0.5]]))


def test_an_unnamed_0_column_of_a_re_saved_frame_is_dropped_too(tmp_path):
    path = tmp_path / "df.csv"  # read back with pandas and written again with index=False
    path.write_text("Unnamed: 0,x\n3,1.5\n0,2.5\n7,0.5\n")
    with pytest.warns(UserWarning, match="pandas index"):
        assert torch.equal(load_vectors(path), torch.tensor([[1.5], [2.5], [0.5]]))


def test_an_index_under_numeric_column_names_is_dropped_and_the_header_skipped(tmp_path):
    path = tmp_path / "df.csv"  # pd.DataFrame(array).to_csv(): header ",0,1"
    path.write_text(",0,1\n0,1.5,2.5\n1,3.5,4.5\n")
    with pytest.warns(UserWarning, match="pandas index"):
        assert torch.equal(load_vectors(path), torch.tensor([[1.5, 2.5], [3.5, 4.5]]))
    path.write_text(",1.5\n2.0,3.5\n4.0,5.5\n")  # but a first row missing a value is no header
    assert "non-numeric value '' at line 1, column 1" in _error(path)


def test_a_header_of_column_numbers_above_real_values_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "df.csv"  # pd.DataFrame(array).to_csv(index=False): header "0,1"
    path.write_text("0,1\n1.5,2.5\n3.5,4.5\n")
    with pytest.warns(UserWarning, match="taken as a header of column numbers"):
        assert torch.equal(load_vectors(path), torch.tensor([[1.5, 2.5], [3.5, 4.5]]))


def test_column_numbers_above_integer_rows_are_kept_but_flagged(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("0,1\n4,5\n7,9\n")
    with pytest.warns(UserWarning, match="may be a header of column numbers; it is kept"):
        assert load_vectors(path).shape == (3, 2)


def test_a_headerless_first_column_counting_rows_is_kept_but_flagged(tmp_path):
    path = tmp_path / "df.csv"  # to_csv(header=False): the index without a header
    path.write_text("0,1.5\n1,3.5\n2,0.5\n")
    with pytest.warns(UserWarning, match="counts 0..2 like a row index; it is kept"):
        assert load_vectors(path).shape == (3, 2)

