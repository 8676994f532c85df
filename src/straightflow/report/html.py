"""`straightflow report`: one self-contained HTML page comparing runs side by side.

Self-contained: images are inline PNG data URIs, the style sheet is inline, there is no script and nothing is
fetched (the favicon too is an inline empty data URI), so the file opens offline, mails and archives as is.

Layout: a summary table (one row per run: method, data, steps, last loss, the quality ratio at each NFE, W2
or feature-FID over its floor, where a perfect sampler scores about 1x); the settings that differ between
runs (and each run's full configuration, folded); then one band per section (training curves, quality during
training, samples at each NFE, trajectories, metric tables) with one column per run, so runs compare across.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from html import escape
from pathlib import Path

from straightflow import __version__
from straightflow.progress import progress as reporter
from straightflow.report.sections import SECTIONS, RunSection, collect_run
from straightflow.report.tables import Column, Table

__all__ = ["build_report", "write_report", "render_page", "summary_table", "differing_settings"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
  border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; } h3 { font-size: 1rem; margin: 0.3rem 0; }
.meta, .note { color: #555; font-size: 0.85rem; }
.band { display: grid; gap: 1.2rem; align-items: start; }
.cell { min-width: 0; overflow-x: auto; }
figure { margin: 0 0 0.8rem 0; } figcaption { font-size: 0.8rem; color: #555; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.4rem 0; }
caption { text-align: left; font-size: 0.8rem; color: #555; padding-bottom: 0.2rem; }
th, td { border: 1px solid #ddd; padding: 0.15rem 0.45rem; white-space: nowrap; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
details summary { cursor: pointer; font-size: 0.85rem; }
"""


def differing_settings(sections: Sequence[RunSection]) -> list[str]:
    """Config keys whose value is not the same in every run (all keys for a single run: none)."""
    keys = dict.fromkeys(k for s in sections for k in s.config)
    return [k for k in keys if len({repr(s.config.get(k)) for s in sections}) > 1]


def summary_table(sections: Sequence[RunSection], nfes: Sequence[int]) -> Table:
    """One row per run: method, data, steps, last loss, and W2/floor (feature-FID/floor for images) at each NFE
    any run was evaluated at (else the requested `nfes`)."""
    columns = [Column("run", "run"), Column("method", "method"), Column("data", "data"), Column("steps", "steps"),
               Column("loss", "last loss", ".4g")]
    present = {int(k[3:]) for s in sections for k in s.summary if k.startswith("nfe")}
    columns += [Column(f"nfe{k}", f"NFE {k}", ".2f", suffix="x") for k in sorted(present or set(nfes))]
    rows = [{"run": s.name, **s.summary} for s in sections]
    return Table(columns, rows, "quality at each NFE: W2 (vectors) or feature-FID (images) over its noise floor",
                 ["floor: the same metric between two independent held-out draws of equal n (W2 on toy sets: the mean "
                  "of four); a perfect sampler "
                  "scores about 1x"])


def _cell(section: RunSection, key: str) -> str:
    parts = [f"<h3>{escape(section.name)}</h3>"]
    for caption, uri in section.images.get(key, []):
        parts.append(f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}'
                     "</figcaption></figure>")
    parts += [t.html() for t in section.tables.get(key, [])]
    parts += [f'<p class="note">{escape(n)}</p>' for n in section.notes.get(key, [])]
    return f'<div class="cell">{"".join(parts)}</div>'


def _band(sections: Sequence[RunSection], cells: list[str]) -> str:
    columns = f"repeat({len(sections)}, minmax(340px, 1fr))"
    return f'<div class="band" style="grid-template-columns: {columns}">{"".join(cells)}</div>'


def _config_cell(section: RunSection, differing: list[str]) -> str:
    rows = [{"key": k, "value": str(section.config.get(k, "-"))} for k in differing]
    cols = [Column("key", "setting"), Column("value", "value")]
    differ = Table(cols, rows).html() if rows else '<p class="note">no setting differs from the other runs</p>'
    everything = Table(cols, [{"key": k, "value": str(v)} for k, v in section.config.items()]).html()
    return (f'<div class="cell"><h3>{escape(section.name)}</h3><p class="meta">{escape(str(section.path))}</p>'
            f"{differ}<details><summary>full configuration</summary>{everything}</details></div>")


def render_page(sections: Sequence[RunSection], nfes: Sequence[int], title: str = "straightflow report") -> str:
    """The HTML document for collected runs (see the module doc)."""
    if not sections:
        raise ValueError("a report needs at least one run, got none")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    differing = differing_settings(sections) if len(sections) > 1 else []
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(sections)} run(s), straightflow {escape(__version__)}, {stamp}. '
            "Time runs from t=0 (source, noise) to t=1 (data).</p>",
            "<h2>Summary</h2>", summary_table(sections, nfes).html(),
            "<h2>Configuration</h2>", _band(sections, [_config_cell(s, differing) for s in sections])]
    for key, heading in SECTIONS.items():
        if any(s.images.get(key) or s.tables.get(key) or s.notes.get(key) for s in sections):
            body += [f"<h2>{escape(heading)}</h2>", _band(sections, [_cell(s, key) for s in sections])]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def build_report(runs: Sequence[str | Path], nfes: Sequence[int] = (1, 2, 4, 8), n: int = 1000, seed: int = 0,
                 evaluate: bool = True, device: str = "cpu", progress: bool = False,
                 title: str = "straightflow report") -> str:
    """The HTML page for run folders `runs` (see the module doc and report.sections for what each shows).

    nfes: the NFEs samples are drawn (and, without an eval.json, evaluated) at; n: points per sample panel
    and quick evaluation; evaluate: whether to evaluate vector runs that have no eval.json.
    """
    if not runs:
        raise ValueError("a report needs at least one run folder, got none")
    nfes = [int(k) for k in nfes]
    if not nfes or any(k < 1 for k in nfes):
        raise ValueError(f"NFEs must be integers >= 1, got {nfes}")
    if n < 2:
        raise ValueError(f"n must be >= 2 points, got {n}")
    sections = [collect_run(r, nfes, n, seed, evaluate, device)
                for r in reporter(list(runs), desc="report", unit="runs", enabled=progress)]
    return render_page(sections, nfes, title)


def write_report(runs: Sequence[str | Path], out: str | Path, **kwargs) -> Path:
    """Write :func:`build_report` to `out` (parent folders created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(runs, **kwargs), encoding="utf-8")
    return out
