"""One progress style for every long loop of pni (training epochs, ``pni eval``, ``pni certify``,
downloads): a tqdm bar on a terminal; elsewhere (a log file, a pipe) one line every few
percent with the estimated time left, never more often than every few seconds, so logs stay
short. Imports nothing from pni.

    with progress_bar(total, "certify", unit="sample") as bar:
        for ...:
            bar.update(k)
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

STEP_PERCENT = 5.0      # a log line every this many percent ...
MIN_SECONDS = 5.0       # ... at most this often


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LogProgress:
    """The non-terminal progress: ``desc: 35% (350/1000 sample), 1 min elapsed, about 2 min
    left`` every ``step`` percent (at most every ``min_seconds``), and one closing line with the
    total time when it printed anything."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 stream: TextIO | None = None, step: float | None = None,
                 min_seconds: float | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream = stream if stream is not None else sys.stderr
        self.step = STEP_PERCENT if step is None else step
        self.min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
        self.started = self._last = time.monotonic()
        self._initial, self._next, self.lines = initial, self.step, 0

    def update(self, k: float = 1) -> None:  # (a fraction of a unit: part of a batch)
        self.n += k
        if not self.total:
            return
        percent = 100.0 * self.n / self.total
        now = time.monotonic()
        if percent >= self._next and percent < 100 and now - self._last >= self.min_seconds:
            elapsed = now - self.started
            done = self.n - self._initial
            left = elapsed * (self.total - self.n) / done if done > 0 else float("nan")
            self._write(f"{self.desc}: {percent:.0f}% ({round(self.n):,}/{round(self.total):,} {self.unit}), "
                        f"{_duration(elapsed)} elapsed, about {_duration(left)} left")
            self._last = now
        while percent >= self._next:
            self._next += self.step

    def credit(self, k: float) -> None:
        """Counts ``k`` units done before a resume: shown as done, not part of the pace."""
        self.n += k
        self._initial += k
        while self.total and 100.0 * self.n / self.total >= self._next:
            self._next += self.step

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self.lines += 1

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.lines:
            self._write(f"{self.desc}: done, {round(self.n):,} {self.unit} in {_duration(time.monotonic() - self.started)}")
            self.lines = 0

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Off:
    """No progress at all."""

    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def credit(bar: Any, k: float) -> None:
    """Advances ``bar`` by ``k`` units finished before a resume (a stopped run's saved work):
    shown as done, but not counted in the pace, so the time left is that of this run's own
    work (counting them would make a resumed run look as fast as its reuse is)."""
    if isinstance(bar, LogProgress):
        bar.credit(k)
    elif hasattr(bar, "last_print_n") and hasattr(bar, "initial"):   # tqdm: its rate counts from initial
        bar.n += k
        bar.initial += k
        bar.last_print_n += k
        bar.refresh()


def shrink_total(bar: Any, k: float) -> None:
    """Lowers ``bar``'s total by ``k`` (work found unneeded midway), never below what is done;
    its time left then covers only the work still to do. Nothing for a bar without a total."""
    total = getattr(bar, "total", None)
    if not total:
        return
    bar.total = max(bar.n, total - k)
    if hasattr(bar, "refresh"):  # tqdm redraws with the new total
        bar.refresh()


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 stream: TextIO | None = None, **tqdm_options: Any) -> Any:
    """A progress counter with ``update(k)`` and ``close()`` (also a context manager): tqdm on a
    terminal, ``LogProgress`` lines elsewhere, nothing when not ``enabled``."""
    if not enabled:
        return _Off()
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False, file=stream, **tqdm_options)
    return LogProgress(total, desc, unit, initial, stream)


def track(items: Iterable[Any], total: int | None, desc: str, unit: str = "it", enabled: bool = True,
          initial: int = 0) -> Iterator[Any]:
    """Iterates ``items``, counting each on a ``progress_bar``."""
    return counted(items, progress_bar(total, desc, unit, enabled, initial))


def counted(items: Iterable[Any], bar: Any) -> Iterator[Any]:
    """Iterates ``items``, one ``bar.update()`` per item; closes ``bar`` at the end."""
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
