"""``/cameras/{id}/latest.jpg``: a camera's last analysed frame with its faces drawn.

Made only when asked, on a worker thread, and at most ``fps`` times a second per camera: a
request in between gets the last one made.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from dalistream.models.arrays import to_host
from dalistream.pipeline.status import AnalysedFrame

BOX_COLOUR = (0, 255, 0)
LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))  # eyes, nose, mouth corners
JPEG_QUALITY = 80


def render(frame: AnalysedFrame) -> bytes:
    """``frame`` as a JPEG at the size it was decoded to (the letterbox content size on the CPU,
    the source size on the GPU), its faces' boxes and landmarks drawn."""
    pixels = to_host(frame.image)
    pixels = pixels if frame.pixel_format == "rgb24" else pixels[..., ::-1]
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    draw = ImageDraw.Draw(image)
    scale_x, scale_y = image.width / frame.letterbox.source_width, image.height / frame.letterbox.source_height
    for face in frame.record["faces"]:
        x1, y1, x2, y2 = face["box"]
        draw.rectangle((x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y), outline=BOX_COLOUR, width=2)
        for (x, y), colour in zip(face["landmarks"], LANDMARK_COLOURS):
            cx, cy = x * scale_x, y * scale_y
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


@dataclass(slots=True)
class _Made:
    frame: AnalysedFrame
    at: float
    jpeg: bytes


class Snapshots:
    """Rate-limited :func:`render` per camera."""

    def __init__(self, fps: float, clock=time.monotonic) -> None:
        self._interval_s = 1.0 / fps
        self._clock = clock
        self._made: dict[str, _Made] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def jpeg(self, camera: str, frame: AnalysedFrame) -> bytes:
        """The JPEG of ``camera``'s ``frame``, or the last one made if that was too recent."""
        async with self._locks.setdefault(camera, asyncio.Lock()):
            made = self._made.get(camera)
            now = self._clock()
            if made is not None and (made.frame is frame or now - made.at < self._interval_s):
                return made.jpeg
            jpeg = await asyncio.get_running_loop().run_in_executor(None, render, frame)
            self._made[camera] = _Made(frame, self._clock(), jpeg)
            return jpeg

    def forget(self, camera: str) -> None:
        """``camera`` was removed: drop what was kept for it."""
        self._made.pop(camera, None)
        self._locks.pop(camera, None)
