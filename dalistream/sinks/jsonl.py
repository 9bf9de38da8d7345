"""JSON-lines files, rotated by size and by UTC day; never overwritten."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


FSYNC_MODES = ("batch", "rotate", "never")


class SinkError(OSError):
    """Records could not be written (disk full, permissions…); the message says how many."""


class DurabilityError(SinkError):
    """The records are in the file, but closing it (fsync, close) failed: they may not be on the disk."""


class JsonlWriter:
    """Appends one compact JSON object per line to ``<dir>/<prefix>-<UTC start>.jsonl``.

    A new file starts when the current one reaches ``rotate_bytes`` or, with ``rotate_daily``,
    when the UTC date changes. Existing files are never truncated: a name already taken gets a
    numeric suffix. Each :meth:`write` ends with a flush, so a crash loses at most the batch
    being written; ``fsync`` says when the kernel is made to put it on the disk too: after
    every ``"batch"``, when a file is closed (``"rotate"``) or ``"never"``. When the disk
    refuses a write, the file is cut back to its last complete line (removed if that leaves it
    empty), :class:`SinkError` says how many records were not written, and the next write
    starts a fresh file. Not thread-safe: one writer thread.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str,
        *,
        rotate_bytes: int,
        rotate_daily: bool = True,
        fsync: str = "rotate",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        self.directory = directory
        self.prefix = prefix
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.fsync = fsync
        self._clock = clock
        self._file: IO[bytes] | None = None
        self._flushed = 0  # bytes of whole lines in the current file
        self._day: str | None = None
        self.paths: list[Path] = []

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        lines = [json.dumps(record, separators=(",", ":")) + "\n" for record in records]
        if not lines:
            return
        try:
            file = self._current_file()
            file.write("".join(lines).encode())
            file.flush()
            if self.fsync == "batch":
                os.fsync(file.fileno())
        except OSError as exc:
            self._abandon()
            raise SinkError(exc.errno, f"lost {len(lines)} records writing {self.directory}: {exc.strerror}") from exc
        self._flushed = file.tell()
        if self._flushed >= self.rotate_bytes:
            self.close()

    def close(self) -> None:
        """Close the current file (the next write starts another); raises :class:`SinkError`
        when what was written cannot be made durable."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                if self.fsync != "never":
                    os.fsync(file.fileno())
                file.close()
            except OSError as exc:
                raise DurabilityError(exc.errno, f"closing {self.paths[-1]}: {exc.strerror}") from exc

    def _current_file(self) -> IO[bytes]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        day = now.strftime("%Y%m%d")
        if self._file is not None and self.rotate_daily and day != self._day:
            self.close()
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            stem = f"{self.prefix}-{now.strftime('%Y%m%dT%H%M%SZ')}"
            path = self.directory / f"{stem}.jsonl"
            suffix = 0
            while True:
                try:
                    self._file = path.open("xb")
                    break
                except FileExistsError:
                    suffix += 1
                    path = self.directory / f"{stem}-{suffix}.jsonl"
            self._day = day
            self._flushed = 0
            self.paths.append(path)
        return self._file

    def _abandon(self) -> None:
        """Drop the failing file, cutting off any partly written line."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError:
            pass  # closing flushes the very lines that just failed; they are counted lost
        try:
            if self._flushed:
                os.truncate(self.paths[-1], self._flushed)
            else:  # nothing of it was ever written: leave no empty file behind
                self.paths.pop().unlink()
        except OSError as exc:
            raise SinkError(exc.errno, f"cannot cut {self.paths[-1]} back to whole lines: {exc.strerror}") from exc
