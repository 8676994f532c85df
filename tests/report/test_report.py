"""`straightflow report`: one self-contained HTML page (inline PNGs that decode, no script, nothing fetched)
holding each run's numbers side by side."""

import base64
import io
import json
import re
from html.parser import HTMLParser

from PIL import Image

from straightflow.cli.main import main


class _Page(HTMLParser):
    """Collects img sources, external references, scripts and the text of every table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.external, self.scripts, self.cells, self._cell = [], [], 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        self.scripts += tag == "script"
        if tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None


def parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_report_is_self_contained_and_every_image_is_a_png_that_decodes(report_file):
    page = parse(report_file)
    assert page.external == [] and page.scripts == 0
    assert len(page.images) >= 8  # per run: loss, samples, trajectories; fm also W2/floor and its snapshot
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.width > 10 and image.height > 10


def test_report_tables_hold_each_runs_numbers(report_runs, report_file):
    fm, mf = report_runs
    cells = parse(report_file).cells
    report = json.loads((fm / "eval.json").read_text())
    for row in report["rows"]:
        assert f"{row['w2']:.4f}" in cells and f"{row['w2_ratio']:.2f}x" in cells
    assert f"{report['noise_floor']:.4f}" in cells
    for run in (fm, mf):
        last = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()][-1]
        assert f"{last['loss']:.4g}" in cells and f"{last['grad_norm']:.3g}" in cells
    quality = [json.loads(ln) for ln in (fm / "quality.jsonl").read_text().splitlines()][-1]
    assert f"{quality['w2_ratio']:.2f}x" in cells
    text = report_file.read_text()
    assert "evaluated now at n=200 (no eval.json)" in text  # the MeanFlow run had none
    assert cells.count("method.name") >= 3  # the differing setting, for each run, and in the full config
    assert re.search(r"<th>NFE 1</th>.*<th>NFE 2</th>", text)


def test_report_of_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not a run folder" in err and err.count("\n") == 1
