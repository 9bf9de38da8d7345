"""One camera's access units waiting for its decoder: bounded, dropping whole GOP tails.

A decoder that falls behind cannot simply lose one access unit: every P-frame after it, up to
the next key unit, would decode broken. So when the queue is full the unit is dropped and so is
the rest of its GOP, until a key unit gets in; each dropped unit is counted. A new stream
(:class:`StreamStart`) always gets in, the oldest waiting units making way for it.
"""

from __future__ import annotations

import asyncio
import enum

from dalistream.decode import StreamStart
from dalistream.ingest.sink import ReceivedAccessUnit

Item = StreamStart | ReceivedAccessUnit


class Put(enum.Enum):
    """What became of an access unit offered to :meth:`UnitQueue.put`."""

    QUEUED = "queued"
    BACKLOG = "backlog"  # the queue was full: dropped, and the rest of its GOP will be
    SKIPPED = "skipped"  # dropped: waiting for a key unit after an earlier drop


class UnitQueue:
    """Holds at most ``size`` items for one decoder; :meth:`close` ends it for the reader."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._items: asyncio.Queue[Item | None] = asyncio.Queue()  # bounded by put(); None ends it
        self._skipping = False
        self._taken = asyncio.Event()

    def __len__(self) -> int:
        return self._items.qsize()

    def start(self, stream: StreamStart) -> int:
        """Queue a new stream's start; returns how many waiting units made way for it."""
        dropped = 0
        while self._items.qsize() >= self.size:
            self._items.get_nowait()
            dropped += 1
        self._items.put_nowait(stream)
        self._skipping = False
        return dropped

    def put(self, unit: ReceivedAccessUnit) -> Put:
        """Queue ``unit`` unless the queue is full or a GOP tail is being skipped."""
        if self._skipping and not unit.key:
            return Put.SKIPPED
        if self._items.qsize() >= self.size:
            self._skipping = True
            return Put.BACKLOG
        self._skipping = False
        self._items.put_nowait(unit)
        return Put.QUEUED

    async def room(self) -> None:
        """Returns once :meth:`put` would queue (for readers that wait instead of dropping)."""
        while self._items.qsize() >= self.size:
            self._taken.clear()
            await self._taken.wait()

    async def take(self, most: int) -> list[Item] | None:
        """Waits for the next items and returns up to ``most`` of them in order; None once closed
        and drained."""
        items = [await self._items.get()]
        while items[-1] is not None and len(items) < most and not self._items.empty():
            items.append(self._items.get_nowait())
        self._taken.set()
        if items[-1] is None:
            self._items.put_nowait(None)  # every later take() sees the end too
            items.pop()
            return items or None
        return items

    def close(self) -> None:
        """No more items: the reader gets what waits, then None."""
        self._items.put_nowait(None)
