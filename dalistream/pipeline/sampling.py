"""Which decoded frames get analysed: `detect_fps` per camera, chosen by presentation time."""

from __future__ import annotations

import math

# Timestamps on a slot boundary can land a hair below it in floating point (0.2 * 5 = 0.999…).
_SLOT_EPSILON = 1e-6


class Sampler:
    """Picks at most ``fps`` frames per second of stream time, evenly spaced by pts.

    Time is cut into slots of ``1 / fps`` seconds; the first frame in each slot is taken.
    Counting frames instead would drift whenever the camera's rate is not what it claims or
    frames are lost. A pts that jumps backwards (a camera restart) starts the slots afresh.
    ``phase`` (a share of a slot, 0 ≤ phase < 1) moves the slot boundaries ``phase / fps``
    seconds earlier: cameras that started together, given different phases, have their frames
    taken at different moments instead of all at once (see :func:`stagger`).

    A stream slower than ``fps`` has every frame taken, which is all it can give: ``fps`` is
    clamped to the stream's rate. After :data:`SLOW_RUN` frames in a row were taken,
    :meth:`slow_stream` reports that rate, once, so the caller can say so.
    """

    SLOW_RUN = 10  # frames in a row taken, each in a slot of its own: the stream is slower than fps

    def __init__(self, fps: float, phase: float = 0.0) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if not 0 <= phase < 1:
            raise ValueError(f"phase must be in [0, 1), got {phase}")
        self.fps = fps
        self.phase = phase
        self._last_slot: int | None = None
        self._last_pts: float | None = None  # of the last frame taken
        self._run: list[float] = []  # pts of the frames taken in a row
        self._slow_fps: float | None = None
        self._reported = False

    def reset(self) -> None:
        """A new stream begins: its first frame is taken whatever its pts."""
        self._last_slot = self._last_pts = None
        self._run.clear()

    def retarget(self, fps: float) -> None:
        """Sample at ``fps`` from now on: the next frame taken is the first in a slot of the new
        rate after the last one taken. Safe to call from another thread than :meth:`take`'s
        (a frame more or less may be taken at the switch)."""
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = fps
        last = self._last_pts
        self._last_slot = None if last is None else self._slot(last)
        self._run.clear()

    def take(self, pts: float) -> bool:
        """True when the frame at ``pts`` (seconds) should be analysed."""
        slot = self._slot(pts)
        if self._last_slot is not None and slot == self._last_slot:
            self._run.clear()
            return False
        if self._last_pts is not None and pts < self._last_pts:
            self._run.clear()  # a restart: the rate is measured afresh, so the run's pts always grow
        self._last_slot, self._last_pts = slot, pts
        self._run.append(pts)
        if len(self._run) >= self.SLOW_RUN and self._slow_fps is None:
            stream_fps = (len(self._run) - 1) / (self._run[-1] - self._run[0])
            if stream_fps < 0.95 * self.fps:  # at about fps itself, every frame is what was asked
                self._slow_fps = stream_fps
        del self._run[: -self.SLOW_RUN]
        return True

    def _slot(self, pts: float) -> int:
        return math.floor(pts * self.fps + self.phase + _SLOT_EPSILON)

    def slow_stream(self) -> float | None:
        """The stream's frame rate, the first time it is found below ``fps`` (then None again)."""
        if self._slow_fps is None or self._reported:
            return None
        self._reported = True
        return self._slow_fps


_GOLDEN = (math.sqrt(5) - 1) / 2


def stagger(ordinal: int) -> float:
    """The sampling phase of the ``ordinal``-th camera (0, 1, 2, …): the fractional parts of
    multiples of the golden ratio, which split a slot into nearly even gaps for any number of
    cameras, so the frames of cameras that started together reach the detectors spread over the
    slot rather than in one burst (a burst waits for the detectors; spread, they keep up)."""
    return (ordinal * _GOLDEN) % 1.0


class IdleWatch:
    """``pipeline.adaptive``: tells when a camera's analysed frames have shown no face for
    ``idle_s`` seconds (it goes idle) and when a face shows again (it is active again). A face
    still tracked (in view, though the detector missed it in this frame) counts as shown: a
    camera with a live track is never idle.

    Pure: the caller passes each analysed frame's arrival time (monotonic seconds), its face
    count and the camera's live tracks, and changes the camera's sampling rate when told.
    """

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.idle = False
        self._last_face: float | None = None  # when the last face (or the first frame) was seen

    def analysed(self, at: float, faces: int, tracked: int = 0) -> bool | None:
        """True when the camera just went idle, False when it just became active, else None."""
        if faces or tracked:
            self._last_face = at
            if self.idle:
                self.idle = False
                return False
            return None
        if self._last_face is None:
            self._last_face = at
        if not self.idle and at - self._last_face >= self.idle_s:
            self.idle = True
            return True
        return None
