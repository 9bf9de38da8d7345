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
    """

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = fps
        self._last_slot: int | None = None

    def reset(self) -> None:
        """A new stream begins: its first frame is taken whatever its pts."""
        self._last_slot = None

    def take(self, pts: float) -> bool:
        """True when the frame at ``pts`` (seconds) should be analysed."""
        slot = math.floor(pts * self.fps + _SLOT_EPSILON)
        if self._last_slot is not None and slot == self._last_slot:
            return False
        self._last_slot = slot
        return True
