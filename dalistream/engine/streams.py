"""The streams a detector's stages run on (:mod:`.schedule` says what each step waits for).

On the CPU every stage runs on the calling thread and is finished when its call returns, so
a step issued is a step done: there is nothing to wait for or record. On the GPU each stage
has a CUDA stream of its own and each step ends in an event on it; the next stage's stream
waits for that event on the device, and the host waits for one only where it must (before
the DALI graph, run from the host, writes a buffer inference may still be reading). The
engines queue their work on their own streams, ordered after and before the inference
stream (DLPack's stream handshake, or events), and CuPy work in postprocess runs on the
postprocess stream.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dalistream.device import GPU

from dalistream.engine.schedule import STAGES, Signal, Step


class HostStreams:
    """The CPU: stages run on the calling thread, so nothing is waited for or recorded."""

    @contextmanager
    def on(self, step: Step) -> Iterator[None]:
        yield

    def busy_ms(self) -> dict[str, float]:
        """Device time per stage: none on the CPU (the stage timings measure the host)."""
        return {}


class CudaStreams:
    """A CUDA stream per stage and ``buffers`` events per stream (signals reuse them: see
    :mod:`.schedule`); each step's device time (from just after its waits to its signal) is
    kept for :meth:`busy_ms`."""

    def __init__(self, buffers: int) -> None:
        import cupy

        self._cupy = cupy
        self.buffers = buffers
        self.streams = {stage: cupy.cuda.Stream(non_blocking=True) for stage in STAGES}
        self._events = {stage: [cupy.cuda.Event() for _ in range(buffers)] for stage in STAGES}
        self._timed: list[tuple[str, Any, Any]] = []  # (stage, start, end) not yet added up
        self._busy: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()  # steps run on several threads

    def event(self, signal: Signal) -> Any:
        return self._events[signal.stage][signal.batch % self.buffers]

    @contextmanager
    def on(self, step: Step) -> Iterator[None]:
        for signal in step.host_waits:
            self.event(signal).synchronize()
        stream = self.streams[step.stage]
        for signal in step.waits:
            stream.wait_event(self.event(signal))
        start = stream.record()
        try:
            with stream:
                yield
        finally:
            stream.record(self.event(step.signal))
            end = stream.record()  # its own: the signal's event is reused
            with self._lock:
                self._timed.append((step.stage, start, end))
                self._add_up()  # what has finished, so the list stays short whether or not anyone asks

    def busy_ms(self) -> dict[str, float]:
        """Device milliseconds each stage's stream has been busy, over the steps finished so far."""
        with self._lock:
            self._add_up()
            return dict(self._busy)

    def _add_up(self) -> None:
        pending = []
        for stage, start, end in self._timed:
            if end.done:
                self._busy[stage] += self._cupy.cuda.get_elapsed_time(start, end)
            else:
                pending.append((stage, start, end))
        self._timed = pending


def stage_streams(device: str, buffers: int) -> HostStreams | CudaStreams:
    """The streams of ``device`` for a detector with ``buffers`` input buffers."""
    return CudaStreams(buffers) if device == GPU else HostStreams()
