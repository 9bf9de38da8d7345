"""Frames from many cameras into inference batches, with a small drop-oldest queue per camera.

Pure logic: the caller supplies the clock, so tests drive it with plain numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Set as AbstractSet
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items per camera and hands out batches of at most ``max_batch``.

    A batch is ready when ``max_batch`` items wait, or when the oldest has waited
    ``max_wait_s``. Each camera keeps at most ``queue_size`` items: live video drops its
    oldest frame rather than let latency grow, and :meth:`push` returns what it dropped so
    the caller can count it. Batches are filled round-robin, one item per camera per round,
    starting with the camera whose item waited longest, so a busy camera cannot starve
    the others.
    """

    def __init__(self, max_batch: int, max_wait_s: float, queue_size: int) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_s >= 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._queues: dict[Hashable, deque[tuple[float, T]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, camera: Hashable, item: T, now: float) -> T | None:
        """Queue ``item`` for ``camera``; returns the item dropped to make room, if any."""
        queue = self._queues.setdefault(camera, deque())
        dropped = None
        if len(queue) >= self.queue_size:
            dropped = queue.popleft()[1]
            self._count -= 1
        queue.append((now, item))
        self._count += 1
        return dropped

    def queued(self, camera: Hashable) -> int:
        """Items waiting for ``camera``."""
        queue = self._queues.get(camera)
        return len(queue) if queue is not None else 0

    def deadline(self, skip: AbstractSet[Hashable] = frozenset()) -> float | None:
        """When the oldest waiting item (of a camera not in ``skip``) makes a batch due, or
        None when none waits."""
        oldest = self._oldest_arrival(skip)
        return None if oldest is None else oldest + self.max_wait_s

    def waiting(self, skip: AbstractSet[Hashable] = frozenset()) -> int:
        """Items waiting, those of the cameras in ``skip`` not counted."""
        if not skip:
            return self._count
        return sum(len(queue) for camera, queue in self._queues.items() if camera not in skip)

    def ready(self, now: float, skip: AbstractSet[Hashable] = frozenset()) -> bool:
        """A batch is due, leaving out the cameras in ``skip``."""
        if self.waiting(skip) >= self.max_batch:
            return True
        deadline = self.deadline(skip)
        return deadline is not None and now >= deadline

    def take(self, skip: AbstractSet[Hashable] = frozenset()) -> list[T]:
        """Remove and return up to ``max_batch`` items (round-robin across cameras), none of a
        camera in ``skip`` (e.g. one whose previous frame is still being analysed: its frames
        then leave in order even when batches run concurrently)."""
        order = sorted(
            (queue[0][0], index, queue)
            for index, (camera, queue) in enumerate(self._queues.items())
            if queue and camera not in skip
        )
        batch: list[T] = []
        while order and len(batch) < self.max_batch:
            remaining = []
            for arrival, index, queue in order:
                if len(batch) == self.max_batch:
                    break
                batch.append(queue.popleft()[1])
                if queue:
                    remaining.append((arrival, index, queue))
            order = remaining
        self._count -= len(batch)
        return batch

    def _oldest_arrival(self, skip: AbstractSet[Hashable]) -> float | None:
        arrivals = [queue[0][0] for camera, queue in self._queues.items() if queue and camera not in skip]
        return min(arrivals) if arrivals else None
