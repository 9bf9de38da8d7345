"""Which presentation time each decoded frame gets, so frames leave in presentation order.

Access units go into a decoder in decode order; with B-frames its frames come out reordered,
in presentation order. Each frame is tagged with the access unit it came from, whose timestamp
is normally its presentation time (RTP timestamps are sampling times, RFC 6184 §5.1), so the
frame keeps its own. Some senders stamp access units in *decode* order instead (a GStreamer
server re-sending a raw H.264 file with B-frames does): their frames' own timestamps then step
backwards. The first backward step switches the stream to the other reading: the frames, in the
order the decoder presents them, take the stream's timestamps in ascending order — the smallest
not yet given out, never one below the last — which is what the sender's clock meant.

Pure logic: tags and timestamps in, timestamps out.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

Unit = TypeVar("Unit")


class FrameTimes(Generic[Unit]):
    """Tracks the units fed to one decoder and times the frames it returns (see the module docstring)."""

    def __init__(self) -> None:
        self._units: dict[int, tuple[Unit, float]] = {}  # fed, no frame yet: tag → (unit, timestamp)
        self._last: float | None = None
        # Once the sender's timestamps are found in decode order: those not given out yet (a
        # heap), and the tags whose timestamp left with a unit that will yield no frame.
        self._stamps: list[tuple[float, int]] | None = None
        self._void: set[int] = set()

    def __len__(self) -> int:
        return len(self._units)

    @property
    def reordered(self) -> bool:
        """The sender's timestamps were found in decode order."""
        return self._stamps is not None

    def fed(self, tag: int, unit: Unit, timestamp: float) -> None:
        """``unit`` (stamped ``timestamp``) went into the decoder as ``tag``; tags increase."""
        self._units[tag] = (unit, timestamp)
        if self._stamps is not None:
            heapq.heappush(self._stamps, (timestamp, tag))

    def void(self, tag: int) -> None:
        """The decoder rejected ``tag``, or it is too old to still come out: it yields no frame."""
        if self._units.pop(tag, None) is not None and self._stamps is not None:
            self._void.add(tag)

    def frame(self, tag: int) -> tuple[Unit, float] | None:
        """The decoder returned the frame of ``tag``: its unit and presentation time (None when
        ``tag`` is unknown, e.g. voided as too old)."""
        entry = self._units.pop(tag, None)
        if entry is None:
            return None
        unit, timestamp = entry
        if self._stamps is None and self._last is not None and timestamp < self._last:
            self._stamps = [(t, k) for k, (_, t) in self._units.items()] + [(timestamp, tag)]
            heapq.heapify(self._stamps)
        if self._stamps is not None:
            timestamp = self._next_stamp()
        self._last = timestamp
        return unit, timestamp

    def expire(self, before: int) -> None:
        """Units fed before tag ``before`` and still without a frame never get one (a decoder
        holds back only a few frames): void them."""
        for tag in [t for t in self._units if t < before]:
            self.void(tag)

    def _next_stamp(self) -> float:
        while self._stamps:
            timestamp, tag = heapq.heappop(self._stamps)
            if tag in self._void:
                self._void.discard(tag)
            elif timestamp > self._last:
                return timestamp
        return self._last  # nothing left above the last: repeat it rather than step back
