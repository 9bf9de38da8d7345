"""``calibrate``: capture INT8 calibration frames from the configured cameras into a folder.

Frames are spread across cameras (an equal quota each) and over time (at least
``interval_s`` of stream time between two frames of one camera), and near-duplicates are
skipped: a frame is kept only when its small grayscale thumbnail differs from every frame
already kept for that camera by more than ``min_difference`` (mean absolute difference,
8-bit levels). Static scenes therefore yield fewer frames rather than copies of one.

:class:`FrameSelector` holds those decisions and is pure; :func:`capture` runs the real
ingest (:class:`CameraIngest`) and decoder (:class:`CpuDecoder`) and writes JPEG files.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
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
from dalistream.decode import CpuDecoder, DecodeError
from dalistream.ingest.camera import CameraIngest, ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.rtp.sdp import VideoFormat

log = structlog.get_logger(__name__)

THUMBNAIL_SIZE = (32, 18)  # width, height of the grayscale thumbnail compared for duplicates
UNIT_QUEUE = 50  # access units waiting for a camera's decoder; beyond that the rest of the GOP is skipped
JPEG_QSCALE = 2  # FFmpeg mjpeg quantizer scale: 2 is near-lossless


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


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """Grayscale thumbnail of a decoded frame, for duplicate detection."""
    return frame.to_ndarray(width=THUMBNAIL_SIZE[0], height=THUMBNAIL_SIZE[1], format="gray", interpolation="AREA")


def encode_jpeg(frame: av.VideoFrame) -> bytes:
    """One decoded frame as a JPEG file (FFmpeg's mjpeg encoder, full resolution)."""
    context = av.CodecContext.create("mjpeg", "w")
    context.width = frame.width
    context.height = frame.height
    context.pix_fmt = "yuvj420p"
    context.time_base = Fraction(1, 25)
    context.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    image = frame.reformat(format="yuvj420p")
    image.pts = 0
    return b"".join(bytes(packet) for packet in [*context.encode(image), *context.encode(None)])


def _file_stem(camera: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", camera)


class _CameraDecoder:
    """One camera's decode side, run on a worker thread one chunk at a time."""

    def __init__(self, camera: str, selector: FrameSelector, out_dir: Path) -> None:
        self.camera = camera
        self._selector = selector
        self._out_dir = out_dir
        self._decoder: CpuDecoder | None = None
        self._pts: dict[int, float] = {}
        self._tag = 0
        self.written: list[Path] = []

    def process(self, items: list[ReceivedAccessUnit | VideoFormat]) -> None:
        for item in items:
            if isinstance(item, VideoFormat):
                self._decoder = CpuDecoder(item.codec)
                self._pts.clear()
                continue
            if self._decoder is None:
                continue
            self._tag += 1
            self._pts[self._tag] = item.pts
            try:
                frames = self._decoder.decode(item.data, self._tag)
            except DecodeError as exc:
                log.debug("access unit not decodable", camera=self.camera, error=str(exc))
                continue
            for frame in frames:
                pts = self._pts.pop(frame.pts, None)
                if pts is None or not self._selector.wants(self.camera, pts):
                    continue
                if self._selector.offer(self.camera, pts, thumbnail(frame)):
                    path = self._out_dir / f"{_file_stem(self.camera)}-{self._selector.kept(self.camera):04d}.jpg"
                    path.write_bytes(encode_jpeg(frame))
                    self.written.append(path)
            for tag in [t for t in self._pts if t < self._tag - 16]:
                del self._pts[tag]


class _Sink:
    """The ingest's sink: queues access units per camera, dropping the rest of a GOP when full."""

    def __init__(self, cameras: Sequence[str]) -> None:
        self.queues: dict[str, asyncio.Queue[ReceivedAccessUnit | VideoFormat]] = {
            camera: asyncio.Queue(UNIT_QUEUE) for camera in cameras
        }
        self._skipping: dict[str, bool] = dict.fromkeys(cameras, False)

    def stream_started(self, camera: str, fmt: VideoFormat) -> None:
        queue = self.queues[camera]
        while queue.full():
            queue.get_nowait()
        queue.put_nowait(fmt)
        self._skipping[camera] = False

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        if self._skipping[camera] and not unit.key:
            return
        try:
            self.queues[camera].put_nowait(unit)
            self._skipping[camera] = False
        except asyncio.QueueFull:
            self._skipping[camera] = True

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
    config: Config, frames: int, out_dir: Path, *, interval_s: float = 2.0, timeout_s: float = 600.0
) -> CaptureReport:
    """Capture up to ``frames`` calibration frames from ``config``'s cameras into ``out_dir``."""
    cameras = [camera.id for camera in config.camera]
    selector = FrameSelector(cameras, frames, interval_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = _Sink(cameras)
    decoders = {camera: _CameraDecoder(camera, selector, out_dir) for camera in cameras}
    stages = Stages()
    loop = asyncio.get_running_loop()

    async def decode(camera: str, pool: ThreadPoolExecutor) -> None:
        queue = sink.queues[camera]
        while not selector.satisfied(camera):
            items: deque[ReceivedAccessUnit | VideoFormat] = deque([await queue.get()])
            while not queue.empty():
                items.append(queue.get_nowait())
            await loop.run_in_executor(pool, decoders[camera].process, list(items))

    with ThreadPoolExecutor(max(1, min(len(cameras), config.pipeline.decode_threads or 4))) as pool:
        ingest = [asyncio.create_task(CameraIngest(camera, sink, stages).run()) for camera in config.camera]
        decoding = [asyncio.create_task(decode(camera, pool)) for camera in cameras]
        try:
            await asyncio.wait_for(asyncio.gather(*decoding), timeout_s)
        except TimeoutError:
            log.warning("calibration capture timed out", kept={c: selector.kept(c) for c in cameras})
        finally:
            for task in [*ingest, *decoding]:
                task.cancel()
            await asyncio.gather(*ingest, *decoding, return_exceptions=True)
    files = tuple(path for decoder in decoders.values() for path in decoder.written)
    return CaptureReport(files, {c: selector.kept(c) for c in cameras}, selector.duplicates, selector.done)
