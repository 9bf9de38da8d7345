"""Face crops as JPEG files, written from a thread of their own, within their retention.

:meth:`CropWriter.submit` never blocks: crops wait in a queue bounded in bytes (beyond it a crop
is lost, counted). The thread encodes each as a JPEG and writes it under the output directory
(``faces/<camera>/<UTC date>/<track>.jpg``) through a temporary file renamed into place, so a
reader never sees half a picture; a live track's crop may be rewritten with a better one.

Retention, oldest first: crops whose date folder is more than ``keep_days`` old are deleted
(checked every :data:`AGE_CHECK_S`), and the oldest written are deleted while all of them take
more than ``max_bytes``. When the disk refuses a crop (full, read-only, I/O error) it is lost and
counted; once a crop is written again, or at :meth:`close`, a ``crop_gap`` event (``from``,
``to``, ``crops_lost``, ``reason``) goes to ``emit``, as ``output_gap`` does for records.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from PIL import Image

from dalistream import records
from dalistream.metrics import Stages
from dalistream.tracks.faces import CropWrite

log = structlog.get_logger(__name__)

JPEG_QUALITY = 90
AGE_CHECK_S = 60.0  # how often crops past keep_days are looked for
QUEUE_BYTES = 64 * 2**20  # crop pixels waiting for the thread
FACES_DIR = "faces"

_STOP = CropWrite("", None, "", 0)  # the queue's end marker


class CropWriter:
    """See the module docstring. ``emit`` takes event records (called from the writer's thread)."""

    def __init__(
        self,
        directory: Path,
        *,
        keep_days: int,
        max_bytes: int,
        emit: Callable[[list[dict[str, Any]]], None],
        stages: Stages | None = None,
        queue_bytes: int = QUEUE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self._emit = emit
        self._stages = stages or Stages()
        self._queue: queue.Queue[CropWrite] = queue.Queue()
        self._queue_bytes = queue_bytes
        self._queued = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="crop-writer", daemon=True)
        self._files: OrderedDict[Path, int] = OrderedDict()  # crop → bytes, oldest written first
        self._bytes = 0
        self._aged_at = float("-inf")
        self._gap: dict[str, Any] | None = None  # the outage under way: since, lost, reason
        self.written = 0
        self.lost = 0
        self.deleted = 0
        self.error: BaseException | None = None  # the thread died of it (a bug of ours)

    @property
    def problem(self) -> str | None:
        """Why crops are not being written right now, or None."""
        with self._lock:
            return None if self._gap is None else str(self._gap["reason"])

    def start(self) -> CropWriter:
        self._thread.start()
        return self

    def submit(self, writes: Iterable[CropWrite]) -> None:
        """Queue crops for writing; never blocks (beyond the queue's bytes a crop is lost, counted)."""
        for write in writes:
            size = write.pixels.nbytes
            with self._lock:
                if self._queued + size > self._queue_bytes:
                    self._lose(1, "the crop writer is behind (queue full)")
                    continue
                self._queued += size
            self._queue.put(write)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what waits (for at most ``timeout_s``), then stop; an outage still under way is reported."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        with self._lock:
            gap, self._gap = self._gap, None
        if gap is not None:
            self._report(gap)

    def _run(self) -> None:
        try:
            self._index()
            while (write := self._next()) is not _STOP:
                if write is not None:
                    with self._lock:
                        self._queued -= write.pixels.nbytes
                    self._write(write)
                self._retain()
        except BaseException as exc:
            with self._lock:
                self.error = exc
                self._lose(self._queue.qsize(), f"the crop writer failed: {exc!r}")
            log.error("the face crop writer failed (a dalistream bug)", exc_info=exc)

    def _next(self) -> CropWrite | None:
        """The next crop to write, :data:`_STOP`, or None after :data:`AGE_CHECK_S` without one."""
        try:
            return self._queue.get(timeout=AGE_CHECK_S)
        except queue.Empty:
            return None

    def _index(self) -> None:
        """The crops already on the disk (an earlier run's), oldest written first."""
        found = []
        for path in (self.directory / FACES_DIR).glob("*/*/*.jpg"):
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((stat.st_mtime, path, stat.st_size))
        for _, path, size in sorted(found):
            self._files[path] = size
            self._bytes += size
        self._retain()

    def _write(self, write: CropWrite) -> None:
        path = self.directory / write.path
        partial = path.with_name(path.name + ".partial")
        with self._stages.measure("crop"):
            jpeg = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(write.pixels), "RGB").save(jpeg, "JPEG", quality=JPEG_QUALITY)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial.write_bytes(jpeg.getbuffer())
                partial.replace(path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
                with self._lock:
                    self._lose(1, exc.strerror or str(exc))
                return
        with self._lock:
            gap, self._gap = self._gap, None
            self.written += 1
        if gap is not None:
            self._report(gap)
        self._bytes += jpeg.tell() - self._files.pop(path, 0)
        self._files[path] = jpeg.tell()

    def _retain(self) -> None:
        """Delete crops past ``keep_days`` (at most every :data:`AGE_CHECK_S`), then the oldest
        while they take more than ``max_bytes``."""
        now = self._clock()
        if self.keep_days and now - self._aged_at >= AGE_CHECK_S:
            self._aged_at = now
            cutoff = (datetime.fromtimestamp(now, UTC) - timedelta(days=self.keep_days)).strftime("%Y-%m-%d")
            for path in [path for path in self._files if path.parent.name < cutoff]:
                self._delete(path)
        while self._bytes > self.max_bytes and self._files:
            self._delete(next(iter(self._files)))

    def _delete(self, path: Path) -> None:
        self._bytes -= self._files.pop(path)
        try:
            path.unlink(missing_ok=True)
            self.deleted += 1
            for folder in (path.parent, path.parent.parent):  # the date folder, then the camera's, once empty
                folder.rmdir()
        except OSError:
            pass  # a folder not empty yet, or a file someone else removed: nothing to do

    def _lose(self, count: int, reason: str) -> None:
        """Count ``count`` crops lost (lock held): they belong to the outage under way."""
        self.lost += count
        if self._gap is None:
            self._gap = {"since": self._clock(), "lost": 0, "reason": reason}
            log.error("face crops lost", reason=reason)
        self._gap["lost"] += count

    def _report(self, gap: dict[str, Any]) -> None:
        log.warning("face crops were lost", lost=gap["lost"], reason=gap["reason"])
        self._emit([records.event(camera=None, event="crop_gap", wallclock=self._clock(),
                                  **{"from": records.iso_utc(gap["since"]), "to": records.iso_utc(self._clock()),
                                     "crops_lost": gap["lost"], "reason": gap["reason"]})])
