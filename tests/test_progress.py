"""Progress off a terminal is plain lines (no carriage returns), at most one per interval; off means silent."""

import io

import torch

from straightflow.progress import progress, progress_callback, track_calls


def test_off_a_terminal_every_update_past_the_interval_is_one_plain_line():
    stream = io.StringIO()
    for _ in progress(range(3), desc="work", unit="rows", every=0.0, stream=stream):
        pass
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert text.splitlines() == [ln for ln in text.splitlines() if ln.startswith("work: ")]
    assert text.splitlines()[0] == "work: 0/3 rows (started)"
    assert [ln.split()[1] for ln in text.splitlines()] == ["0/3", "1/3", "2/3", "3/3"]  # the close repeats nothing


def test_lines_are_rate_limited_to_the_interval_plus_a_final_one():
    stream = io.StringIO()
    bar = progress(total=1000, desc="sample", unit="NFE", every=3600.0, stream=stream)
    for _ in range(1000):
        bar.update(1)
    bar.set_postfix(loss=0.25)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "sample: 0/1000 NFE (started)"
    assert lines[1].startswith("sample: 1000/1000 NFE (") and "loss 0.25" in lines[1]


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    for _ in progress(range(5), desc="quiet", enabled=False, every=0.0, stream=stream):
        pass
    assert stream.getvalue() == ""


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("STRAIGHTFLOW_PROGRESS_EVERY", "0")
    stream = io.StringIO()
    bar = progress(total=2, desc="env", stream=stream)
    bar.update(1)
    assert stream.getvalue().splitlines()[1].startswith("env: 1/2 it (")


def test_callback_reports_shards_and_closes_at_the_total(monkeypatch):
    import straightflow.progress as p

    stream, original = io.StringIO(), p.progress
    monkeypatch.setattr(p, "progress", lambda **kw: original(**kw, every=0.0, stream=stream))
    report = progress_callback("pairs", unit="shards")
    assert progress_callback("pairs", enabled=False) is None
    report(1, 2)
    report(2, 2)
    report(2, 2)  # a closed bar stays quiet
    assert [ln.split()[1] for ln in stream.getvalue().splitlines()] == ["0/2", "1/2", "2/2"]


def test_track_calls_counts_forward_calls_and_removes_its_hook():
    net = torch.nn.Linear(2, 2)
    with track_calls(net, "sample", total=3, enabled=True) as bar:
        bar.stream, bar.every = io.StringIO(), 3600.0
        for _ in range(3):
            net(torch.zeros(1, 2))
    assert bar.n == 3 and not net._forward_hooks
