"""A progress line for long-running commands: done / total, percent, ETA, on stderr.

At most one line per ``interval_s`` (and the last state at :meth:`Progress.close`): on a
terminal one line rewritten in place (carriage return), otherwise plain lines, so logs and
CI output stay readable. Reports go to stdout; progress never does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO


class Progress:
    """``update(done, total)`` as work goes on; use as a context manager (or call
    :meth:`close`) to finish the line."""

    def __init__(
        self,
        label: str,
        unit: str,
        *,
        stream: TextIO | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._shown_at: float | None = None
        self._line = ""  # the latest state
        self._shown = ""  # the latest state written
        self._width = 0  # of the line on a terminal, to blank what a shorter one leaves

    def update(self, done: float, total: float, note: str = "") -> None:
        """``done`` of ``total`` units; ``note`` is shown after the percentage."""
        now = self._clock()
        self._line = self._format(done, total, note, now - self._started)
        if self._shown_at is None or now - self._shown_at >= self._interval_s or (done >= total and self._line != self._shown):
            self._show(now)

    def close(self) -> None:
        """Write the latest state if it is not shown yet; end the terminal line."""
        if self._line != self._shown:
            self._show(self._clock())
        if self._tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _format(self, done: float, total: float, note: str, elapsed_s: float) -> str:
        percent = 100 * done / total if total else 100.0
        if done >= total:
            eta = "done"
        elif done > 0:
            eta = f"ETA {_duration(elapsed_s * (total - done) / done)}"
        else:
            eta = "ETA unknown"
        return f"{self.label}: {done:g}/{total:g} {self.unit} ({percent:.0f} %){f', {note}' if note else ''}, {eta}"

    def _show(self, now: float) -> None:
        if self._tty:
            self._stream.write("\r" + self._line.ljust(self._width))
            self._width = len(self._line)
        else:
            self._stream.write(self._line + "\n")
        self._stream.flush()
        self._shown, self._shown_at = self._line, now


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
