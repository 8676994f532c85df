"""One table formatter: rows of values -> an aligned text table with units, CSV, Markdown and HTML.

A :class:`Table` is columns (each a key into the row dicts, a header, a unit and a number format) and rows
(dicts); notes are lines printed under it (e.g. what the floor means). Text and Markdown show the formatted
values; CSV keeps full precision, for spreadsheets and scripts. Missing values (None) show as "-".

    table = Table([Column("solver", "solver"), Column("w2", "W2", fmt=".4f"),
                   Column("seconds", "time", unit="s", fmt=".2f")], rows, title="run r  n=4000")
    print(table.text()); table.write(Path("eval"))  # eval.csv, eval.md
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Column", "Table", "write_tables"]


@dataclass(frozen=True)
class Column:
    """key: the row dict's key; title (with unit, if any, as "title (unit)") heads the column; fmt: a format
    spec for numbers (e.g. ".4f"); suffix: appended to each formatted number (e.g. "x" for ratios)."""

    key: str
    title: str
    fmt: str = ""
    unit: str = ""
    suffix: str = ""

    @property
    def header(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title

    def cell(self, value: Any) -> str:
        """The value as shown in text and Markdown."""
        if value is None:
            return "-"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return format(value, self.fmt) + self.suffix


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Table:
    """Columns, rows (dicts keyed by column keys), a title line and notes (lines shown under the table)."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a table needs at least one column, got none")
        keys = [c.key for c in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"column keys must be distinct, got {keys}")

    def _numeric(self, column: Column) -> bool:
        values = [r.get(column.key) for r in self.rows if r.get(column.key) is not None]
        return bool(values) and all(_is_number(v) for v in values)

    def text(self) -> str:
        """Aligned columns two spaces apart: numbers right-aligned, text left-aligned; title above, notes below."""
        cells = [[c.cell(r.get(c.key)) for c in self.columns] for r in self.rows]
        widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(self.columns)]
        right = [self._numeric(c) for c in self.columns]

        def line(values: list[str]) -> str:
            parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
            return "  ".join(parts).rstrip()

        lines = [self.title] if self.title else []
        lines.append(line([c.header for c in self.columns]))
        lines += [line(row) for row in cells]
        return "\n".join(lines + list(self.notes))

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table (numbers right-aligned), the title as a paragraph above it and the
        notes as paragraphs below."""
        def escape(text: str) -> str:
            return text.replace("|", "\\|")

        head = "| " + " | ".join(escape(c.header) for c in self.columns) + " |"
        rule = "|" + "|".join("---:" if self._numeric(c) else ":---" for c in self.columns) + "|"
        body = ["| " + " | ".join(escape(c.cell(r.get(c.key))) for c in self.columns) + " |" for r in self.rows]
        parts = ([escape(self.title), ""] if self.title else []) + [head, rule, *body]
        if self.notes:
            parts += ["", *(escape(n) + "  " for n in self.notes)]
        return "\n".join(parts) + "\n"

    def html(self) -> str:
        """An HTML <table> (title as its caption, numeric cells of class "num") followed by the notes as
        <p class="note"> paragraphs; every text is escaped."""
        from html import escape

        numeric = [self._numeric(c) for c in self.columns]
        head = "".join(f"<th>{escape(c.header)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f'<td{" class=num" if num else ""}>{escape(c.cell(r.get(c.key)))}</td>'
                             for c, num in zip(self.columns, numeric, strict=True)) + "</tr>"
            for r in self.rows)
        caption = f"<caption>{escape(self.title)}</caption>" if self.title else ""
        notes = "".join(f'<p class="note">{escape(n)}</p>' for n in self.notes)
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"

    def csv(self) -> str:
        """CSV with the headers (units included) and full-precision values; None is an empty field."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.header for c in self.columns])
        for r in self.rows:
            writer.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in self.columns])
        return buffer.getvalue()

    def write(self, stem: str | Path) -> list[Path]:
        """Write stem.csv and stem.md (any suffix of stem is replaced); returns both paths."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [stem.with_suffix(".csv"), stem.with_suffix(".md")]
        paths[0].write_text(self.csv())
        paths[1].write_text(self.markdown())
        return paths


def write_tables(tables: Mapping[str, Table], stem: str | Path, key: str = "run") -> list[Path]:
    """Several named tables: stem.md holds each under a heading of its name; stem.csv holds every row, with
    a first column `key` naming its table (the columns of all tables, in first-seen order)."""
    if not tables:
        raise ValueError("write_tables needs at least one table, got none")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Column] = {key: Column(key, key)}
    for table in tables.values():
        columns.update({c.key: c for c in table.columns if c.key not in columns})
    rows = [{**r, key: name} for name, table in tables.items() for r in table.rows]
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    csv_path.write_text(Table(list(columns.values()), rows).csv())
    md_path.write_text("\n".join(f"## {name}\n\n{table.markdown()}" for name, table in tables.items()))
    return [csv_path, md_path]
