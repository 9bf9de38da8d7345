"""The progress line: rate-limited, ETA from the pace so far, rewritten in place on a terminal only."""

from __future__ import annotations

import io

from dalistream.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_most_once_per_interval_with_the_eta():
    clock, out = Clock(), io.StringIO()
    with Progress("eval", "images", stream=out, clock=clock) as progress:
        clock.now += 2.0
        progress.update(8, 200)
        clock.now += 0.5
        progress.update(16, 200)  # within the interval: not shown now
        clock.now += 0.5
        progress.update(24, 200, "5 faces")
    assert out.getvalue().splitlines() == [
        "eval: 8/200 images (4 %), ETA 48 s",
        "eval: 24/200 images (12 %), 5 faces, ETA 22 s",
    ]


def test_the_last_state_is_shown_at_close_and_the_end_at_once():
    clock, out = Clock(), io.StringIO()
    progress = Progress("calibrate", "frames", stream=out, clock=clock)
    progress.update(0, 300)
    clock.now += 0.2
    progress.update(1, 300)
    progress.close()
    progress = Progress("bench", "s", stream=out, clock=clock)
    progress.update(1, 2)
    clock.now += 0.1
    progress.update(2, 2)
    progress.update(2, 2)  # the same finished state again: not repeated
    progress.close()
    assert out.getvalue().splitlines() == [
        "calibrate: 0/300 frames (0 %), ETA unknown",
        "calibrate: 1/300 frames (0 %), ETA 1 min 00 s",
        "bench: 1/2 s (50 %), ETA 0 s",
        "bench: 2/2 s (100 %), done",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place():
    clock, out = Clock(), Terminal()
    with Progress("calibrate", "frames", stream=out, clock=clock) as progress:
        clock.now += 90.0
        progress.update(100, 1000)
        clock.now += 6000.0
        progress.update(999, 1000)
    first, last = "calibrate: 100/1000 frames (10 %), ETA 13 min 30 s", "calibrate: 999/1000 frames (100 %), ETA 6 s"
    assert out.getvalue() == "\r" + first + "\r" + last.ljust(len(first)) + "\n"


def test_long_etas_read_in_hours():
    clock, out = Clock(), io.StringIO()
    with Progress("eval", "images", stream=out, clock=clock) as progress:
        clock.now += 3600.0
        progress.update(1, 3)
    assert out.getvalue() == "eval: 1/3 images (33 %), ETA 2 h 00 min\n"
