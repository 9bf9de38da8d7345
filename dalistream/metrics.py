"""Per-stage cost accounting, latency percentiles and the histograms ``/metrics`` exports
(thread-safe, bounded)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


@dataclass(slots=True)
class StageCost:
    """Totals for one stage: how many items passed, wall and CPU seconds spent on them."""

    items: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def per_item_ms(self) -> dict[str, float]:
        n = max(self.items, 1)
        return {"items": self.items, "wall_ms": 1e3 * self.wall_s / n, "cpu_ms": 1e3 * self.cpu_s / n}


class Stages:
    """Accumulates :class:`StageCost` by stage name.

    CPU time is the measuring thread's own (``time.thread_time``): exact for single-threaded
    stages; a stage that fans out to a library's thread pool (ONNX Runtime) shows its real
    CPU cost only in wall time × threads, so both are kept.
    """

    def __init__(self, observe: Callable[[str, int, float], None] | None = None) -> None:
        self._costs: dict[str, StageCost] = {}
        self._lock = threading.Lock()
        self._observe = observe  # also told of every measurement: (stage, items, wall seconds)

    @contextmanager
    def measure(self, stage: str, items: int = 1) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(stage, items, time.perf_counter() - wall, time.thread_time() - cpu)

    def add(self, stage: str, items: int, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            cost = self._costs.setdefault(stage, StageCost())
            cost.items += items
            cost.wall_s += wall_s
            cost.cpu_s += cpu_s
        if self._observe is not None:
            self._observe(stage, items, wall_s)

    def snapshot(self) -> dict[str, StageCost]:
        with self._lock:
            return {name: StageCost(c.items, c.wall_s, c.cpu_s) for name, c in self._costs.items()}


class Tally:
    """One thread's measurements of a stage added up and handed to :class:`Stages` every
    ``every`` items: for a stage timed per RTP packet, where a lock, a histogram observation
    and a context manager per packet cost more than the stage itself. :meth:`flush` hands over
    the rest (at the end of a session). Not thread-safe: one per thread."""

    def __init__(self, stages: Stages, stage: str, every: int) -> None:
        self._stages = stages
        self._stage = stage
        self._every = every
        self._items = 0
        self._wall_s = self._cpu_s = 0.0

    def add(self, wall_s: float, cpu_s: float) -> None:
        self._items += 1
        self._wall_s += wall_s
        self._cpu_s += cpu_s
        if self._items >= self._every:
            self.flush()

    def flush(self) -> None:
        if self._items:
            self._stages.add(self._stage, self._items, self._wall_s, self._cpu_s)
            self._items = 0
            self._wall_s = self._cpu_s = 0.0


class Latencies:
    """The most recent ``capacity`` latencies (ms), for percentiles."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._values: deque[float] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, latency_ms: float) -> None:
        with self._lock:
            self._values.append(latency_ms)

    def percentiles(self, points: tuple[float, ...] = (50, 90, 99, 100)) -> dict[str, float]:
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64)
        if not values.size:
            return {}
        return {f"p{p:g}": float(v) for p, v in zip(points, np.percentile(values, points))}


class Telemetry:
    """The histograms the running pipeline fills for ``/metrics``, in a registry of its own:
    several runtimes in one process (tests, a cluster worker) never mix their numbers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "dalistream_latency_seconds", "From a frame's arrival to its record.",
            buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.batch = Histogram(
            "dalistream_batch_frames", "Frames in each inference batch.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.stage = Histogram(
            "dalistream_stage_seconds", "Wall time per item of each pipeline stage.", ["stage"],
            buckets=STAGE_BUCKETS_S, registry=self.registry,
        )
        self._stage_children: dict[str, Histogram] = {}  # per stage: labels() once, not per packet

    def stage_cost(self, stage: str, items: int, wall_s: float) -> None:
        """A :class:`Stages` observer: one per-item observation per measurement."""
        if items:
            child = self._stage_children.get(stage)
            if child is None:
                child = self._stage_children.setdefault(stage, self.stage.labels(stage))
            child.observe(wall_s / items)
