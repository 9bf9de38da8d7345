"""Records written from a thread of their own: a slow or full disk never stalls the pipeline,
and output that could not be written is kept, retried and, when it is lost, said so in the output.

:meth:`RecordWriter.submit` never blocks: records wait in a bounded queue (``queue_records``;
beyond it new records are lost, counted). When the disk refuses a write, the records are kept
in memory (at most ``buffer_records``; beyond that the oldest are lost, counted) and the write is
retried every ``retry_s``. When the disk takes writes again, an ``output_gap`` event goes first
(``from``, ``to``, ``records_lost``, ``reason``), then the records that were kept. At
:meth:`close` whatever waits is written if the disk allows; what cannot be is lost, and
:attr:`recovered` says whether the output ended healthy.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from dalistream import records
from dalistream.config import OutputConfig

from .base import SinkState
from .jsonl import DurabilityError, JsonlWriter, SinkError

log = structlog.get_logger(__name__)

_STOP = None  # the queue's end marker


class RecordWriter:
    """Owns a :class:`JsonlWriter` and the thread that writes through it (see the module docstring);
    the ``files`` :class:`~dalistream.sinks.base.Sink`."""

    name = "files"

    def __init__(
        self,
        writer: JsonlWriter,
        *,
        queue_records: int = 50_000,
        buffer_records: int = 200_000,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._writer = writer
        self._queue: queue.Queue[list[Mapping[str, Any]] | None] = queue.Queue()
        self._queued = 0  # records in the queue (bounded by queue_records)
        self._queue_records = queue_records
        self._kept: deque[Mapping[str, Any]] = deque()  # waiting for the disk after a failure
        self._buffer_records = buffer_records
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._gap: dict[str, Any] | None = None  # the outage under way: since, reason, records lost
        self.written = 0
        self.lost = 0
        self.error: BaseException | None = None  # the writer thread died of it (a bug of ours)

    @property
    def paths(self) -> list[Path]:
        """The files written so far (a snapshot)."""
        return list(self._writer.paths)

    @property
    def recovered(self) -> bool:
        """No outage is under way: everything submitted was written or its loss is on record."""
        return self._gap is None

    @property
    def problem(self) -> str | None:
        """Why records are not reaching the output right now (the writer failed, or the disk
        refuses writes), or None while all is well."""
        with self._lock:
            if self.error is not None:
                return f"the writer failed: {self.error!r}"
            return None if self._gap is None else str(self._gap["reason"])

    @property
    def queued(self) -> int:
        """Records waiting for the disk (queued, or kept through a failure)."""
        return self._queued + len(self._kept)

    def state(self) -> SinkState:
        problem = self.problem
        return SinkState(self.name, problem is None, problem, self.written, self.lost, self.queued)

    def start(self) -> RecordWriter:
        self._thread.start()
        return self

    def submit(self, batch: Iterable[Mapping[str, Any]]) -> None:
        """Queue records for writing; never blocks (a full queue loses them, counted)."""
        batch = list(batch)
        if not batch:
            return
        with self._lock:
            if self.error is not None:
                self._lose(len(batch), f"the writer failed: {self.error!r}")
                return
            if self._queued + len(batch) > self._queue_records:
                self._lose(len(batch), "the writer is behind (queue full)")
                return
            self._queued += len(batch)
        self._queue.put(batch)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what waits (retrying until ``timeout_s`` while the disk refuses), then stop."""
        self._deadline = time.monotonic() + timeout_s
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._write_until_stopped()
        except BaseException as exc:
            with self._lock:
                self.error = exc
                self._lose(self._queued + len(self._kept), f"the writer failed: {exc!r}")
            log.error("the output writer failed (a dalistream bug)", exc_info=exc)

    def _write_until_stopped(self) -> None:
        stopping = False
        while True:
            try:
                batch = self._queue.get(timeout=self._retry_s if self._kept else None)
            except queue.Empty:
                batch = []
            if batch is _STOP:
                stopping = True
                batch = []
            with self._lock:
                self._queued -= len(batch)
            self._keep(batch)
            while not self._queue.empty() and len(self._kept) < self._buffer_records:
                more = self._queue.get_nowait()
                if more is _STOP:
                    stopping = True
                    continue
                with self._lock:
                    self._queued -= len(more)
                self._keep(more)
            self._flush()
            if stopping:
                self._finish()
                return

    def _keep(self, batch: list[Mapping[str, Any]]) -> None:
        self._kept.extend(batch)
        overflow = len(self._kept) - self._buffer_records
        if overflow > 0:
            for _ in range(overflow):
                self._kept.popleft()
            with self._lock:
                self._lose(overflow, "the disk refused writes for longer than the buffer holds")

    def _flush(self) -> bool:
        """Write the kept records (after the gap event, if an outage ends); True when done."""
        if not self._kept:
            return True
        batch = list(self._kept)
        gap = None
        if self._gap is not None:
            gap = records.event(camera=None, event="output_gap", wallclock=self._clock(),
                                **{"from": records.iso_utc(self._gap["since"]), "to": records.iso_utc(self._clock()),
                                   "records_lost": self._gap["lost"], "reason": self._gap["reason"]})
            batch.insert(0, gap)
        try:
            self._writer.write(batch)
        except DurabilityError as exc:
            log.error("output may not be on the disk", error=str(exc))
        except SinkError as exc:
            with self._lock:
                if self._gap is None:
                    self._gap = {"since": self._clock(), "lost": 0, "reason": exc.strerror or str(exc)}
                    log.error("output write failed; keeping records in memory and retrying",
                              error=str(exc), kept=len(self._kept))
            return False
        written = len(self._kept)
        self._kept.clear()
        with self._lock:
            self.written += written
            if gap is not None:
                log.warning("output writable again", lost=self._gap["lost"], since=gap["from"])
                self._gap = None
        return True

    def _finish(self) -> None:
        while not self._flush() and time.monotonic() < self._deadline:
            time.sleep(self._retry_s)
        with self._lock:
            if self._kept:
                self._lose(len(self._kept), "the disk still refused writes at shutdown")
        self._kept.clear()
        try:
            self._writer.close()
        except SinkError as exc:
            log.error("output may not be on the disk", error=str(exc))

    def _lose(self, count: int, reason: str) -> None:
        """Count ``count`` records lost (lock held): they belong to the outage under way."""
        self.lost += count
        if self._gap is None:
            self._gap = {"since": self._clock(), "lost": 0, "reason": reason}
            log.error("output records lost", reason=reason)
        self._gap["lost"] += count


def output_writer(output: OutputConfig, prefix: str | None = None) -> RecordWriter:
    """The writer ``[output]`` describes (file names start with ``prefix``, default its own)."""
    return RecordWriter(
        JsonlWriter(
            output.dir,
            prefix or output.prefix,
            rotate_bytes=int(output.rotate_mb * 2**20),
            rotate_daily=output.rotate_daily,
            fsync=output.fsync,
        )
    )
