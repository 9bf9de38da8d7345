"""Records held for another process to collect: a cluster worker's output when the coordinator
writes every worker's records into its own files (``cluster.gather_output``).

It stands where a :class:`~dalistream.sinks.writer.RecordWriter` would, with the same reading
side, and writes nothing itself: :meth:`RecordRelay.take` hands over what waits, in the order it
came. It is bounded: while nobody collects, records beyond ``limit`` are lost, counted, and the
next :meth:`take` starts with an ``output_gap`` event saying how many and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dalistream import records

from .base import SinkState

RELAY_RECORDS = 50_000  # about 15 minutes of 10 cameras at 5 fps with their events


class RecordRelay:
    """Holds records until :meth:`take` (see the module docstring); a
    :class:`~dalistream.sinks.base.Sink` named ``relay``."""

    name = "relay"

    def __init__(self, *, limit: int = RELAY_RECORDS, clock: Callable[[], float] = time.time) -> None:
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._held: list[Mapping[str, Any]] = []
        self._gap: dict[str, Any] | None = None  # records lost since the last take: since, count
        self.lost = 0
        self.written = 0  # by the collector, which counts them
        self.error: BaseException | None = None  # a relay cannot fail; read like RecordWriter's

    @property
    def paths(self) -> list[Path]:
        """No files: the collector writes them."""
        return []

    @property
    def recovered(self) -> bool:
        """No loss waits to be reported."""
        return self._gap is None

    @property
    def problem(self) -> str | None:
        with self._lock:
            return None if self._gap is None else self._gap["reason"]

    @property
    def queued(self) -> int:
        return len(self._held)

    def state(self) -> SinkState:
        problem = self.problem
        return SinkState(self.name, problem is None, problem, self.written, self.lost, self.queued)

    def start(self) -> RecordRelay:
        return self

    def submit(self, batch: Iterable[Mapping[str, Any]]) -> None:
        """Hold records for the collector; never blocks (beyond ``limit`` they are lost, counted)."""
        batch = list(batch)
        with self._lock:
            room = self._limit - len(self._held)
            self._held.extend(batch[:room])
            if (overflow := len(batch) - room) > 0:
                self.lost += overflow
                if self._gap is None:
                    self._gap = {"since": self._clock(), "lost": 0,
                                 "reason": f"the coordinator did not collect this worker's records ({self._limit} held)"}
                self._gap["lost"] += overflow

    def take(self) -> list[Mapping[str, Any]]:
        """Every record held, in order, and none held after (an ``output_gap`` event first when
        some were lost since the last call)."""
        with self._lock:
            taken, self._held = self._held, []
            if self._gap is not None:
                gap = records.event(camera=None, event="output_gap", wallclock=self._clock(),
                                    **{"from": records.iso_utc(self._gap["since"]), "to": records.iso_utc(self._clock()),
                                       "records_lost": self._gap["lost"], "reason": self._gap["reason"]})
                taken.insert(0, gap)
                self._gap = None
        return taken

    def close(self, timeout_s: float = 0.0) -> None:
        """Nothing to flush: what is held waits for the last :meth:`take`."""
