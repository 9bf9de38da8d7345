"""RTP timestamp unwrapping: 32-bit wrapping ticks to elapsed seconds."""

from __future__ import annotations

from typing import Final

_WRAP: Final = 1 << 32
_HALF_WRAP: Final = 1 << 31


class TimestampUnwrapper:
    """Turns 32-bit RTP timestamps into a monotonic-ish 64-bit count, relative to the first one.

    Each timestamp is taken as the nearest one (modulo 2**32) to the previous, so the
    count crosses the wrap-around in either direction and a small backwards step
    (reordering, B-frames) stays a small step.
    """

    def __init__(self, clock_rate: int) -> None:
        """:param clock_rate: RTP timestamp ticks per second (90 000 for video)."""
        if clock_rate <= 0:
            raise ValueError(f"clock_rate must be positive, got {clock_rate}")
        self._clock_rate = clock_rate
        self._previous: int | None = None
        self._ticks = 0  # since the first timestamp

    def seconds(self, ts: int) -> float:
        """Seconds from the first timestamp seen to ``ts`` (0.0 for the first one)."""
        if not 0 <= ts < _WRAP:
            raise ValueError(f"RTP timestamp must fit in 32 bits, got {ts}")
        if self._previous is not None:
            self._ticks += (ts - self._previous + _HALF_WRAP) % _WRAP - _HALF_WRAP
        self._previous = ts
        return self._ticks / self._clock_rate
