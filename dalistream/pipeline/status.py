"""What each camera is doing right now, for ``/health``, the status page and snapshots.

The runtime tells a :class:`CameraStatus` what happens (the camera's events, access units,
analysed frames); readers take a :meth:`~CameraStatus.view`. Everything here runs on the event
loop, so no locks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from dalistream.geometry import Letterbox

FPS_WINDOW_S = 10.0  # analysed fps is counted over this much recent time
STALLED_S = 2.0  # no frame analysed for this long (at least): the rate is 0

CONNECTING, STREAMING, BACKING_OFF, STOPPED = "connecting", "streaming", "backing_off", "stopped"
UNPLACED = "unplaced"  # cluster mode: no live worker has room for it


@dataclass(frozen=True, slots=True)
class AnalysedFrame:
    """A camera's last analysed frame (the converted image, owned) and its record."""

    image: Any  # NumPy, or CuPy on the GPU
    pixel_format: str  # "bgr24" or "rgb24"
    letterbox: Letterbox
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusView:
    """One camera's state at one moment."""

    state: str
    state_age_s: float
    analysed_fps: float
    last_frame_age_s: float | None
    last_error: str | None
    last_error_at: str | None
    codec: str | None
    transport: str | None
    size: tuple[int, int] | None
    idle: bool = False  # pipeline.adaptive: analysed at the idle rate (no face for a while)


class CameraStatus:
    """One camera's state (connecting, streaming, backing_off, stopped), told by its events."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.state = CONNECTING
        self._since = clock()
        self.last_error: str | None = None
        self.last_error_at: str | None = None  # ISO time of the event
        self.codec: str | None = None
        self.transport: str | None = None
        self.last_unit: float | None = None  # clock() when its last access unit arrived
        self.latest: AnalysedFrame | None = None
        self.idle = False
        self._analysed: deque[float] = deque()

    def event(self, event: str, fields: dict[str, Any], wallclock: str) -> None:
        match event:
            case "connected":
                self._enter(STREAMING)
                self.codec = fields.get("codec", self.codec)
                self.transport = fields.get("transport", "file" if "file" in fields else self.transport)
            case "disconnected" | "file_error":
                self._enter(BACKING_OFF)
                self.last_error, self.last_error_at = str(fields.get("reason", event)), wallclock
            case "reconnecting":
                self._enter(BACKING_OFF)
            case "end_of_file" if not fields.get("looping"):
                self._enter(STOPPED)
            case "idle" | "active":
                self.idle = event == "idle"

    def stopped(self) -> None:
        """Its source ended (a clip played out, or it was removed)."""
        self._enter(STOPPED)

    def unit(self) -> None:
        self.last_unit = self._clock()

    def analysed(self, frame: AnalysedFrame) -> None:
        now = self._clock()
        self._analysed.append(now)
        self._trim(now)
        self.latest = frame

    def view(self) -> StatusView:
        now = self._clock()
        self._trim(now)
        size = None
        if self.latest is not None:
            size = (self.latest.letterbox.source_width, self.latest.letterbox.source_height)
        return StatusView(
            state=self.state,
            state_age_s=now - self._since,
            analysed_fps=self._fps(now),
            last_frame_age_s=None if self.last_unit is None else now - self.last_unit,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            codec=self.codec,
            transport=self.transport,
            size=size,
            idle=self.idle,
        )

    def _fps(self, now: float) -> float:
        """Frames analysed per second, from the first to the last within :data:`FPS_WINDOW_S`;
        0 once none came for three of their intervals (a stalled camera is not "at 5 fps")."""
        frames = self._analysed
        span = frames[-1] - frames[0] if len(frames) > 1 else 0.0
        if span <= 0:
            return 0.0
        rate = (len(frames) - 1) / span
        return 0.0 if now - frames[-1] > max(STALLED_S, 3.0 / rate) else rate

    def _enter(self, state: str) -> None:
        if state != self.state:
            self.state, self._since = state, self._clock()

    def _trim(self, now: float) -> None:
        while self._analysed and self._analysed[0] < now - FPS_WINDOW_S:
            self._analysed.popleft()
