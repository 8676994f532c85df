"""Tables: aligned text with units, full-precision CSV, Markdown and HTML from the same rows."""

import csv
import io

import pytest

from straightflow.report.tables import Column, Table, write_tables

COLUMNS = [Column("solver", "solver"), Column("nfe", "NFE"), Column("w2", "W2", ".3f", "data units"),
           Column("ratio", "W2/floor", ".2f", suffix="x"), Column("seconds", "time", ".1f", "s")]
ROWS = [{"solver": "held-out", "w2": 0.123456, "ratio": 1.0},
        {"solver": "euler", "nfe": 16, "w2": 1.5, "ratio": 12.15, "seconds": 0.25}]


def test_text_columns_line_up_numbers_right_text_left_units_in_the_header():
    lines = Table(COLUMNS, ROWS, "title", ["floor: what fresh data score"]).text().splitlines()
    assert lines[0] == "title" and lines[-1] == "floor: what fresh data score"
    header, floor, euler = lines[1:4]
    assert "W2 (data units)" in header and "time (s)" in header
    for title, value in (("W2 (data units)", "1.500"), ("W2/floor", "12.15x"), ("time (s)", "0.2")):
        end = header.index(title) + len(title)
        assert euler[end - len(value):end] == value, title  # numbers end under the end of their header
    assert floor[header.index("W2 (data units)"):].split()[:2] == ["0.123", "1.00x"]
    assert euler.startswith("euler ") and floor.startswith("held-out")  # text starts under its header
    assert floor.split()[1] == "-"  # a missing value


def test_csv_keeps_full_precision_and_markdown_escapes_and_aligns():
    table = Table(COLUMNS, ROWS, "a | b")
    parsed = list(csv.reader(io.StringIO(table.csv())))
    assert parsed[0] == ["solver", "NFE", "W2 (data units)", "W2/floor", "time (s)"]
    assert parsed[1] == ["held-out", "", "0.123456", "1.0", ""]
    md = table.markdown().splitlines()
    assert md[0] == "a \\| b" and md[3] == "|:---|---:|---:|---:|---:|"
    assert md[5] == "| euler | 16 | 1.500 | 12.15x | 0.2 |"


def test_html_escapes_and_marks_numeric_cells():
    html = Table([Column("name", "name"), Column("v", "v", ".2f")], [{"name": "<b>", "v": 2.0}], "t", ["n"]).html()
    assert "&lt;b&gt;" in html and "<td class=num>2.00</td>" in html and '<p class="note">n</p>' in html


def test_write_tables_stacks_rows_under_a_name_column(tmp_path):
    paths = write_tables({"fm": Table(COLUMNS, ROWS[:1]), "meanflow": Table(COLUMNS, ROWS[1:])}, tmp_path / "m.txt",
                         key="method")
    assert [p.name for p in paths] == ["m.csv", "m.md"]
    rows = list(csv.DictReader(io.StringIO(paths[0].read_text())))
    assert [(r["method"], r["solver"]) for r in rows] == [("fm", "held-out"), ("meanflow", "euler")]
    assert "## fm" in paths[1].read_text() and "## meanflow" in paths[1].read_text()


def test_bad_tables_are_one_line_errors():
    with pytest.raises(ValueError, match="distinct"):
        Table([Column("a", "a"), Column("a", "b")], [])
    with pytest.raises(ValueError, match="at least one column"):
        Table([], [])
