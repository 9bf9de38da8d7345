"""``calibrate``: capture INT8 calibration frames from the configured cameras into a folder.

Frames are spread across cameras (an equal quota each) and over time (at least
``interval_s`` of stream time between two frames of one camera), and near-duplicates are
skipped: a frame is kept only when its small grayscale thumbnail differs from every frame
already kept for that camera by more than ``min_difference`` (mean absolute difference,
8-bit levels). Static scenes therefore yield fewer frames rather than copies of one.

:class:`FrameSelector` holds those decisions and is pure; :func:`capture` runs the service's
ingest (cameras or clips) and frame sources with it, full-size frames out, and writes JPEG files.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import structlog

from dalistream.config import Config
from dalistream.decode import FrameSpec, StreamStart, create_source
from dalistream.device import CPU
from dalistream.ingest import ReceivedAccessUnit, ingest_for
from dalistream.metrics import Stages
from dalistream.pipeline.units import UnitQueue
from dalistream.progress import Progress

log = structlog.get_logger(__name__)

THUMBNAIL_SIZE = (32, 18)  # width, height of the grayscale thumbnail compared for duplicates
UNIT_QUEUE = 50  # access units waiting for a camera's decoder; beyond that the rest of the GOP is skipped
JPEG_QSCALE = 2  # FFmpeg mjpeg quantizer scale: 2 is near-lossless
FULL_RGB = FrameSpec(input_size=None, pixel_format="rgb24")  # calibration frames keep their full size


@dataclass(slots=True)
class _CameraSelection:
    quota: int
    last_pts: float | None = None
    duplicates: int = 0
    thumbnails: list[np.ndarray] = field(default_factory=list)


class FrameSelector:
    """Decides which decoded frames become calibration frames (pure; no I/O)."""

    def __init__(self, cameras: Sequence[str], frames: int, interval_s: float, min_difference: float = 4.0) -> None:
        if not cameras:
            raise ValueError("need at least one camera")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if interval_s < 0 or min_difference < 0:
            raise ValueError("interval_s and min_difference must be >= 0")
        quota = math.ceil(frames / len(cameras))
        # Equal quotas, the total trimmed to ``frames`` by giving the last cameras one fewer.
        extra = quota * len(cameras) - frames
        self._cameras = {
            camera: _CameraSelection(quota - (1 if index >= len(cameras) - extra else 0))
            for index, camera in enumerate(cameras)
        }
        self.interval_s = interval_s
        self.min_difference = min_difference

    def wants(self, camera: str, pts: float) -> bool:
        """Whether a frame of ``camera`` at ``pts`` is worth converting and comparing."""
        state = self._cameras[camera]
        if len(state.thumbnails) >= state.quota:
            return False
        return state.last_pts is None or pts - state.last_pts >= self.interval_s or pts < state.last_pts

    def offer(self, camera: str, pts: float, thumbnail: np.ndarray) -> bool:
        """Keep this frame? ``thumbnail`` is its grayscale thumbnail (uint8, fixed size)."""
        if not self.wants(camera, pts):
            return False
        state = self._cameras[camera]
        state.last_pts = pts
        current = thumbnail.astype(np.float32)
        for kept in state.thumbnails:
            if float(np.mean(np.abs(kept - current))) <= self.min_difference:
                state.duplicates += 1
                return False
        state.thumbnails.append(current)
        return True

    def kept(self, camera: str) -> int:
        """Frames kept so far for ``camera``."""
        return len(self._cameras[camera].thumbnails)

    def satisfied(self, camera: str) -> bool:
        """``camera`` has reached its quota."""
        state = self._cameras[camera]
        return len(state.thumbnails) >= state.quota

    @property
    def duplicates(self) -> int:
        """Frames skipped as near-duplicates of a kept one, all cameras."""
        return sum(s.duplicates for s in self._cameras.values())

    @property
    def done(self) -> bool:
        return all(self.satisfied(camera) for camera in self._cameras)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """Grayscale thumbnail of an RGB frame (HWC uint8), for duplicate detection."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return frame.to_ndarray(width=THUMBNAIL_SIZE[0], height=THUMBNAIL_SIZE[1], format="gray", interpolation="AREA")


def encode_jpeg(image: np.ndarray) -> bytes:
    """An RGB frame (HWC uint8) as a JPEG file (FFmpeg's mjpeg encoder, full resolution)."""
    height, width = image.shape[:2]
    context = av.CodecContext.create("mjpeg", "w")
    context.width = width
    context.height = height
    context.pix_fmt = "yuvj420p"
    context.time_base = Fraction(1, 25)
    context.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])


def _file_stem(camera: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", camera)


class _Wanted:
    """The selector as one camera's frame source sees it: convert a frame only if it is wanted."""

    def __init__(self, selector: FrameSelector, camera: str) -> None:
        self._selector = selector
        self._camera = camera

    def take(self, pts: float) -> bool:
        return self._selector.wants(self._camera, pts)

    def reset(self) -> None:
        """Nothing to forget: a restarted stream's early pts is already a new chance."""


class _Sink:
    """The ingest's sink: one bounded access-unit queue per camera, as the service has."""

    def __init__(self, cameras: Sequence[str]) -> None:
        self.queues = {camera: UnitQueue(UNIT_QUEUE) for camera in cameras}

    def stream_started(self, camera: str, codec: str) -> None:
        self.queues[camera].start(StreamStart(codec))

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        self.queues[camera].put(unit)  # a dropped unit only costs a candidate frame

    async def room(self, camera: str) -> None:
        await self.queues[camera].room()

    def event(self, camera: str, event: str, **fields: Any) -> None:
        log.info(event, camera=camera, **fields)

    def lost(self, camera: str, *, packets: int = 0, frames: int = 0, malformed: int = 0) -> None:
        """Losses only cost candidate frames here."""

    def internal_error(self, camera: str, error: Exception) -> None:
        log.error("internal error on a camera's packet path; restarting its session", camera=camera, exc_info=error)


@dataclass(frozen=True, slots=True)
class CaptureReport:
    files: tuple[Path, ...]
    per_camera: dict[str, int]
    duplicates: int
    complete: bool  # every camera reached its quota before the timeout


async def capture(
    config: Config,
    frames: int,
    out_dir: Path,
    *,
    interval_s: float = 2.0,
    timeout_s: float = 600.0,
    progress: Progress | None = None,
) -> CaptureReport:
    """Capture up to ``frames`` calibration frames from ``config``'s cameras into ``out_dir``
    (frames kept so far told to ``progress`` as they are written)."""
    cameras = [camera.id for camera in config.camera]
    selector = FrameSelector(cameras, frames, interval_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = _Sink(cameras)
    stages = Stages()
    sources = {camera: create_source(CPU, camera, _Wanted(selector, camera), FULL_RGB, stages) for camera in cameras}
    written: dict[str, list[Path]] = {camera: [] for camera in cameras}
    loop = asyncio.get_running_loop()

    def keep(camera: str, items: list[StreamStart | ReceivedAccessUnit]) -> None:
        """Decode on a worker thread; write the frames the selector keeps."""
        for frame in sources[camera].process(items).frames:
            if selector.offer(camera, frame.pts, thumbnail(frame.image)):
                path = out_dir / f"{_file_stem(camera)}-{selector.kept(camera):04d}.jpg"
                path.write_bytes(encode_jpeg(frame.image))
                written[camera].append(path)

    async def decode(camera: str, pool: ThreadPoolExecutor) -> None:
        while not selector.satisfied(camera) and (items := await sink.queues[camera].take(UNIT_QUEUE)) is not None:
            await loop.run_in_executor(pool, keep, camera, items)
            if progress is not None:
                kept = sum(selector.kept(c) for c in cameras)
                progress.update(kept, frames, f"{selector.duplicates} near-duplicates skipped")

    with ThreadPoolExecutor(max(1, min(len(cameras), config.pipeline.decode_threads or 4))) as pool:
        ingest = [asyncio.create_task(ingest_for(camera, sink, stages).run()) for camera in config.camera]
        decoding = [asyncio.create_task(decode(camera, pool)) for camera in cameras]
        try:
            await asyncio.wait_for(asyncio.gather(*decoding), timeout_s)
        except TimeoutError:
            log.warning("calibration capture timed out", kept={c: selector.kept(c) for c in cameras})
        finally:
            for task in [*ingest, *decoding]:
                task.cancel()
            await asyncio.gather(*ingest, *decoding, return_exceptions=True)
    files = tuple(path for camera in cameras for path in written[camera])
    return CaptureReport(files, {c: selector.kept(c) for c in cameras}, selector.duplicates, selector.done)
