"""Progress of long work, readable on a terminal and in a log file alike.

On a terminal (stderr is a TTY) :func:`progress` is a tqdm bar. Anywhere else (a log file, a pipe, CI) it
prints one plain line when the work starts, then at most one every `every` seconds (default 5, or
$STRAIGHTFLOW_PROGRESS_EVERY) as units complete, and one when it ends, each ending in a newline and none
holding a carriage return:

    sample: 24/64 NFE (31.8 NFE/s, 0.8 s elapsed, ~1.3 s left)

Library functions take ``progress: bool = False`` and call :func:`progress` with ``enabled=progress``; only the
command line turns it on, so the library never prints unless asked.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from torch import nn

__all__ = ["Progress", "progress", "progress_callback", "track_calls", "DEFAULT_EVERY"]

DEFAULT_EVERY = 5.0  # seconds between plain lines


def _every() -> float:
    text = os.environ.get("STRAIGHTFLOW_PROGRESS_EVERY", "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_EVERY
    except ValueError:
        raise ValueError(f"STRAIGHTFLOW_PROGRESS_EVERY must be a number of seconds, got {text!r}") from None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Counts units of work done out of `total` (None: unknown) and reports them (see the module doc).

    Use as a context manager or call :meth:`close`; :meth:`update` adds done units, :meth:`set_postfix` adds
    named values (e.g. loss=0.12) to what is shown. Disabled (enabled=False) it does nothing at all.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 initial: int = 0, every: float | None = None, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        if total is not None and total < 0:
            raise ValueError(f"progress total must be >= 0 or None, got {total}")
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.n, self.initial, self.postfix = initial, initial, ""
        self.stream = stream if stream is not None else sys.stderr
        self.every = _every() if every is None else every
        self._start = self._last = time.perf_counter()
        self._bar: Any = None
        self._closed = False
        self._written: str | None = None  # the (count, postfix) state last written as a plain line
        if enabled and (tty if tty is not None else _isatty(self.stream)):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream)
        elif enabled:  # a first line at once: work whose first unit takes long is not silent until then
            count = f"{initial}/{total}" if total is not None else f"{initial}"
            self.stream.write(f"{desc}: {count} {unit} (started)\n")
            self.stream.flush()

    def update(self, k: int = 1) -> None:
        if not self.enabled:
            return
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        """Named values shown after the count (floats with 4 significant digits)."""
        if not self.enabled:
            return
        self.postfix = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix)

    def line(self, now: float | None = None) -> str:
        """The plain line: 'desc: n/total unit (rate, elapsed, time left[, postfix])'."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{rate:.3g} {self.unit}/s", f"{_duration(elapsed)} elapsed"]
        if self.total is not None and rate > 0 and self.n < self.total:
            parts.append(f"~{_duration((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: {count} {self.unit} ({', '.join(parts)})"

    def _write(self, now: float) -> None:
        self._written = f"{self.n} {self.postfix}"
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar, or print the final plain line."""
        if self._closed or not self.enabled:
            self._closed = True
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._written != f"{self.n} {self.postfix}":  # no repeat of a line just written
            self._write(time.perf_counter())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class _Iterating(Progress):
    def __init__(self, iterable: Iterable, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, **kwargs: Any) -> Progress:
    """A :class:`Progress` over `total` units, or, given an iterable, one that yields its items and counts
    them (total = len(iterable) when it has one). kwargs: initial, every, stream, tty."""
    if iterable is None:
        return Progress(total, desc, unit, enabled, **kwargs)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return _Iterating(iterable, total=total, desc=desc, unit=unit, enabled=enabled, **kwargs)


@contextmanager
def track_calls(module: nn.Module, desc: str, total: int | None = None, enabled: bool = True,
                unit: str = "calls") -> Iterator[Progress]:
    """Count forward calls of `module` (e.g. network evaluations of a sampler) as progress while inside."""
    bar = progress(total=total, desc=desc, unit=unit, enabled=enabled)
    handle = module.register_forward_hook(lambda *_: bar.update(1)) if enabled else None
    try:
        yield bar
    finally:
        if handle is not None:
            handle.remove()
        bar.close()


def progress_callback(desc: str, unit: str = "it", enabled: bool = True) -> Callable[[int, int], None] | None:
    """A `callback(done, total)` for library functions that report progress that way (reflow pair shards): it
    opens a :class:`Progress` at the first call and closes it when done reaches total; None when disabled."""
    if not enabled:
        return None
    state: dict[str, Progress] = {}

    def report(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = progress(total=total, desc=desc, unit=unit)
        if done > bar.n:
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report
