"""The running service: cameras → decode → sample → batch → DALI → engine → JSON lines.

The event loop only moves items between bounded queues and dispatches blocking work: decoding
to a thread pool (one access unit chain per camera at a time, so each decoder sees its stream
in order) and preprocessing + inference + postprocessing to one inference thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np
import structlog

from dalistream import records
from dalistream.pipeline.batching import Batcher
from dalistream.config import Config, ConfigError
from dalistream.decode import CpuDecoder, DecodeError
from dalistream.engine import create_engine
from dalistream.geometry import Letterbox
from dalistream.ingest.camera import CameraIngest, ReceivedAccessUnit
from dalistream.metrics import Latencies, Stages
from dalistream.models.kinds import input_convention, output_decoder
from dalistream.pipeline.preprocess import Preprocessor
from dalistream.rtp.sdp import VideoFormat
from dalistream.pipeline.sampling import Sampler
from dalistream.sinks import JsonlWriter, SinkError

log = structlog.get_logger(__name__)

ACCESS_UNIT_QUEUE = 50  # per camera: 2 s of 25 fps video waiting for the decoder
DECODE_CHUNK = 8  # access units handed to a decode thread at once
REPORT_INTERVAL_S = 1.0  # how often loss/drop counts become events


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """A frame chosen for analysis, already scaled to its letterbox content size (in the model's channel order)."""

    camera: str
    seq: int
    pts: float
    image: np.ndarray
    letterbox: Letterbox
    received: float
    wallclock: float


class Decoded(NamedTuple):
    frames: list[SampledFrame]
    errors: int  # access units the decoder rejected


class FrameSource:
    """One camera's decode side (runs on a decode thread, one call at a time)."""

    def __init__(
        self, camera: str, input_size: tuple[int, int], detect_fps: float, stages: Stages, pixel_format: str = "bgr24"
    ) -> None:
        self.camera = camera
        self.input_size = input_size
        self.pixel_format = pixel_format
        self._detect_fps = detect_fps
        self._stages = stages
        self._decoder: CpuDecoder | None = None
        self._sampler = Sampler(detect_fps)
        self._pending: dict[int, ReceivedAccessUnit] = {}
        self._tag = 0
        self.next_seq = 0

    def process(self, items: list[ReceivedAccessUnit | VideoFormat]) -> Decoded:
        """Decode access units in order (a VideoFormat starts a new stream); sample and convert."""
        frames: list[SampledFrame] = []
        errors = 0
        for item in items:
            if isinstance(item, VideoFormat):
                self._decoder = CpuDecoder(item.codec)
                self._sampler = Sampler(self._detect_fps)
                self._pending.clear()
                continue
            self._tag += 1
            self._pending[self._tag] = item
            with self._stages.measure("decode"):
                try:
                    decoded = self._decoder.decode(item.data, self._tag)
                except DecodeError as exc:
                    log.debug("access unit not decodable", camera=self.camera, error=str(exc))
                    errors += 1
                    continue
            frames.extend(self._sample(decoded))
        return Decoded(frames, errors)

    def _sample(self, decoded: list[av.VideoFrame]) -> list[SampledFrame]:
        frames = []
        for frame in decoded:
            source = self._pending.pop(frame.pts, None)
            if source is None or not self._sampler.take(source.pts):
                continue
            letterbox = Letterbox.fit(frame.width, frame.height, *self.input_size)
            with self._stages.measure("convert"):
                image = CpuDecoder.convert(frame, letterbox, self.pixel_format)
            frames.append(
                SampledFrame(self.camera, self.next_seq, source.pts, image, letterbox, source.received, source.wallclock)
            )
            self.next_seq += 1
        # A decoder never holds more than a few frames back; anything older was swallowed.
        for tag in [t for t in self._pending if t < self._tag - 16]:
            del self._pending[tag]
        return frames


class Analyzer:
    """Preprocess (DALI) + inference + postprocess for one batch, on the inference thread."""

    def __init__(self, config: Config, stages: Stages, latencies: Latencies) -> None:
        width, height = config.model.input
        convention = input_convention(config.model.kind)
        self._preprocess = Preprocessor(
            width, height, config.pipeline.max_batch, mean=convention.mean, std=convention.std
        )
        self._engine = create_engine(config)
        self._decoder = output_decoder(
            config.model.kind, width, height, config.model.score_threshold, config.model.nms_iou
        )
        self._stages = stages
        self._latencies = latencies
        # The first runs allocate buffers and pick kernels (hundreds of ms): do it before any
        # camera's frames wait on it, at the largest batch so later shapes fit.
        blank = np.zeros((height, width, 3), np.uint8)
        self._engine(self._preprocess([blank] * config.pipeline.max_batch))

    def __call__(self, frames: list[SampledFrame]) -> list[dict[str, Any]]:
        n = len(frames)
        with self._stages.measure("dali_graph", n):
            tensor = self._preprocess([f.image for f in frames])
        with self._stages.measure("inference", n):
            outputs = self._engine(tensor)
        with self._stages.measure("postprocess", n):
            faces = self._decoder(outputs, [f.letterbox for f in frames])
            now = time.monotonic()
            out = []
            for frame, found in zip(frames, faces):
                latency_ms = (now - frame.received) * 1e3
                self._latencies.add(latency_ms)
                out.append(
                    records.detections(
                        camera=frame.camera,
                        seq=frame.seq,
                        pts=frame.pts,
                        wallclock=frame.wallclock,
                        width=frame.letterbox.source_width,
                        height=frame.letterbox.source_height,
                        latency_ms=latency_ms,
                        faces=found,
                    )
                )
        return out


def _check_supported(config: Config) -> None:
    """Refuse settings this build cannot honour, before any camera is contacted."""
    if not config.model.onnx.is_file():
        raise ConfigError(f"model.onnx: {config.model.onnx} not found (scripts/setup.sh extracts the default model)")
    if config.pipeline.device == "gpu":
        raise ConfigError('pipeline.device: "gpu" is not available yet (TensorRT/NVDEC path); use "cpu" or "auto"')
    if config.model.precision == "fp16":
        raise ConfigError('model.precision: "fp16" needs the GPU (TensorRT); on the CPU use "fp32" or "int8"')


@dataclass(slots=True)
class _CameraState:
    source: FrameSource
    units: asyncio.Queue
    skipping_to_key: bool = False
    losses: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    analysed: int = 0
    internal_errors: int = 0


class Runtime:
    """Runs the whole pipeline until :meth:`run`'s ``stop`` event is set, then flushes."""

    def __init__(self, config: Config) -> None:
        _check_supported(config)
        self.config = config
        self.stages = Stages()
        self.latencies = Latencies()
        width, height = config.model.input
        self._cameras = {
            cam.id: _CameraState(
                FrameSource(
                    cam.id,
                    (width, height),
                    config.pipeline.detect_fps,
                    self.stages,
                    input_convention(config.model.kind).pixel_format,
                ),
                asyncio.Queue(ACCESS_UNIT_QUEUE),
            )
            for cam in config.camera
        }
        self._batcher: Batcher[SampledFrame] = Batcher(
            config.pipeline.max_batch, config.pipeline.max_wait_ms / 1e3, config.pipeline.queue_frames
        )
        self._writer = JsonlWriter(
            config.output.dir,
            config.output.prefix,
            rotate_bytes=int(config.output.rotate_mb * 2**20),
            rotate_daily=config.output.rotate_daily,
        )
        self._wake = asyncio.Event()
        self.records_lost = 0

    @property
    def output_paths(self) -> list[Path]:
        return list(self._writer.paths)

    def analysed(self) -> dict[str, int]:
        return {camera: state.analysed for camera, state in self._cameras.items()}

    def internal_errors(self) -> dict[str, int]:
        """Bugs of ours met on each camera's packet path (each restarted that camera's session)."""
        return {camera: state.internal_errors for camera, state in self._cameras.items()}

    # IngestSink: called by the camera ingest tasks on the event loop.

    def stream_started(self, camera: str, fmt: VideoFormat) -> None:
        state = self._cameras[camera]
        state.skipping_to_key = False
        while not self._enqueue(state, fmt):
            # The decoder is still behind on the previous session: its tail makes way.
            state.units.get_nowait()
            state.losses["frames_lost"] += 1

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        state = self._cameras[camera]
        if state.skipping_to_key and not unit.key:
            state.losses["frames_lost"] += 1
            return
        state.skipping_to_key = False
        if not self._enqueue(state, unit):
            # The decoder is behind: everything until the next IDR would decode broken.
            state.skipping_to_key = True
            state.losses["frames_lost"] += 1
            state.losses["decoder_backlog"] += 1

    def event(self, camera: str, event: str, **fields: Any) -> None:
        (log.info if event == "connected" else log.warning)(event, camera=camera, **fields)
        self._write([records.event(camera=camera, event=event, wallclock=time.time(), **fields)])

    def lost(self, camera: str, *, packets: int = 0, frames: int = 0, malformed: int = 0) -> None:
        losses = self._cameras[camera].losses
        losses["packets_lost"] += packets
        losses["frames_lost"] += frames
        losses["malformed_packets"] += malformed

    def internal_error(self, camera: str, error: Exception) -> None:
        self._cameras[camera].internal_errors += 1
        log.error("internal error on a camera's packet path; restarting its session", camera=camera, exc_info=error)

    # The service.

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        threads = self.config.pipeline.decode_threads or os.cpu_count() or 1
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="decode") as decode_pool,
            ThreadPoolExecutor(1, thread_name_prefix="infer") as infer_pool,
        ):
            analyzer = await loop.run_in_executor(infer_pool, Analyzer, self.config, self.stages, self.latencies)
            ingest = [
                asyncio.create_task(CameraIngest(cam, self, self.stages).run(), name=f"ingest-{cam.id}")
                for cam in self.config.camera
            ]
            decoders = [
                asyncio.create_task(self._decode_loop(state, decode_pool), name=f"decode-{camera}")
                for camera, state in self._cameras.items()
            ]
            batching = asyncio.create_task(self._batch_loop(analyzer, infer_pool), name="batch")
            reporting = asyncio.create_task(self._report_loop(), name="report")
            tasks = [*ingest, *decoders, batching, reporting]
            stopping = asyncio.create_task(stop.wait(), name="stop")
            try:
                await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    if task.done():
                        # These tasks only end by cancellation: anything else is a bug.
                        task.result()
                        raise RuntimeError(f"task {task.get_name()} ended unexpectedly")
            finally:
                stopping.cancel()
                for task in ingest:
                    task.cancel()
                await asyncio.gather(*ingest, return_exceptions=True)
                for state in self._cameras.values():
                    await state.units.put(None)
                await asyncio.gather(*decoders, return_exceptions=True)
                batching.cancel()
                reporting.cancel()
                await asyncio.gather(batching, reporting, return_exceptions=True)
                while len(self._batcher):
                    await self._analyse(analyzer, infer_pool)
                self._report()
                self._writer.close()

    def _enqueue(self, state: _CameraState, item: ReceivedAccessUnit | VideoFormat) -> bool:
        try:
            state.units.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def _decode_loop(self, state: _CameraState, pool: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await state.units.get()]
            while len(items) < DECODE_CHUNK and not state.units.empty():
                items.append(state.units.get_nowait())
            done = None in items
            items = [item for item in items if item is not None]
            frames, errors = await loop.run_in_executor(pool, state.source.process, items)
            state.losses["decode_errors"] += errors
            now = time.monotonic()
            for frame in frames:
                dropped = self._batcher.push(frame.camera, frame, now)
                if dropped is not None:
                    self._cameras[dropped.camera].drops["queue_full"] += 1
            if frames:
                self._wake.set()
            if done:
                return

    async def _batch_loop(self, analyzer: Analyzer, pool: ThreadPoolExecutor) -> None:
        while True:
            now = time.monotonic()
            if self._batcher.ready(now):
                await self._analyse(analyzer, pool)
                continue
            deadline = self._batcher.deadline()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if deadline is None else max(0.0, deadline - now))

    async def _analyse(self, analyzer: Analyzer, pool: ThreadPoolExecutor) -> None:
        frames = self._batcher.take()
        out = await asyncio.get_running_loop().run_in_executor(pool, analyzer, frames)
        for frame in frames:
            self._cameras[frame.camera].analysed += 1
        self._write(out)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self._report()

    def _report(self) -> None:
        """Turn the loss and drop counts since the last report into events."""
        for camera, state in self._cameras.items():
            if any(state.losses.values()):
                self.event(camera, "gap", **{k: v for k, v in state.losses.items() if v})
                state.losses.clear()
            for reason, frames in state.drops.items():
                if frames:
                    self.event(camera, "dropped", frames=frames, reason=reason)
            state.drops.clear()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        with self.stages.measure("write", len(batch)):
            try:
                self._writer.write(batch)
            except SinkError as exc:
                self.records_lost += len(batch)
                log.error("output write failed", error=str(exc))
