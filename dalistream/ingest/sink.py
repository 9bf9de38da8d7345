"""What every source of access units (an RTSP camera, a recorded file) hands the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ReceivedAccessUnit:
    """An access unit (Annex-B) with the times the pipeline needs downstream."""

    data: bytes
    key: bool
    pts: float  # seconds of stream time since the stream started
    received: float  # time.monotonic() when its last packet arrived
    wallclock: float  # time.time() at the same moment


class IngestSink(Protocol):
    """What the ingest hands its results to (the runtime). Every call is made on the event loop."""

    def stream_started(self, camera: str, codec: str) -> None:
        """A new stream of ``codec`` ("H264" or "H265") begins; its decoder starts afresh."""

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        """The next access unit, in decode order; it never waits (a full queue drops, counted)."""

    async def room(self, camera: str) -> None:
        """Returns once ``camera``'s pipeline can take another access unit without dropping
        anything: the backpressure of a file read as fast as the pipeline goes."""

    def event(self, camera: str, event: str, **fields: Any) -> None: ...
    def lost(self, camera: str, *, packets: int = 0, frames: int = 0, malformed: int = 0) -> None: ...
    def internal_error(self, camera: str, error: Exception) -> None:
        """Our own code raised ``error`` on ``camera``'s packet path (a bug, not the camera's
        fault): log it with its traceback and count it. The camera restarts its session."""
