"""The running service: sources → decode → sample → batch → detect → JSON lines.

The runtime only wires the stages. Each camera has an ingest task (RTSP or a clip) that feeds
its :class:`UnitQueue`; a decode task hands chunks of that queue to the camera's
:class:`~dalistream.decode.FrameSource` on a decode thread (one chunk at a time, so each decoder
sees its stream in order) and pushes the sampled frames into the :class:`Batcher`; a batch task
runs the :class:`~dalistream.models.detector.Detector` on one inference thread. The stage
implementations come from the device plan resolved at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from dalistream import records
from dalistream.config import Config
from dalistream.decode import Decoded, FrameSource, FrameSpec, SampledFrame, StreamStart, create_source
from dalistream.device import DevicePlan
from dalistream.ingest import ReceivedAccessUnit, ingest_for
from dalistream.metrics import Latencies, Stages
from dalistream.models.detector import Detector
from dalistream.models.kinds import input_convention
from dalistream.pipeline.batching import Batcher
from dalistream.pipeline.preflight import preflight
from dalistream.pipeline.sampling import Sampler
from dalistream.pipeline.units import Put, UnitQueue
from dalistream.sinks import JsonlWriter, RecordWriter

log = structlog.get_logger(__name__)

ACCESS_UNIT_QUEUE = 50  # per camera: 2 s of 25 fps video waiting for the decoder
DECODE_CHUNK = 8  # access units handed to a decode thread at once
REPORT_INTERVAL_S = 1.0  # how often loss/drop counts become events
OUTPUT_CLOSE_S = 5.0  # at shutdown, how long a refusing disk is retried before the rest is lost


def analyse(
    detector: Detector, frames: Sequence[SampledFrame], latencies: Latencies | None = None, stages: Stages | None = None
) -> list[dict[str, Any]]:
    """Sampled frames through ``detector``: one ``detections`` record each, its latency
    running from the frame's arrival to now (added to ``latencies``)."""
    faces = detector([f.image for f in frames], [f.letterbox for f in frames])
    with (stages or Stages()).measure("record", len(frames)):
        now = time.monotonic()
        out = []
        for frame, found in zip(frames, faces):
            latency_ms = (now - frame.received) * 1e3
            if latencies is not None:
                latencies.add(latency_ms)
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


@dataclass(slots=True)
class _CameraState:
    sampler: Sampler
    source: FrameSource
    units: UnitQueue
    lossless: bool  # a clip read as fast as the pipeline goes: wait for room, never drop
    losses: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    analysed: int = 0
    internal_errors: int = 0


class Runtime:
    """Runs the whole pipeline until :meth:`run`'s ``stop`` event is set (or every camera is a
    clip that ended), then flushes.

    ``plan`` defaults to :func:`preflight`'s, which also refuses what cannot run here.
    """

    def __init__(self, config: Config, plan: DevicePlan | None = None) -> None:
        self.plan = plan if plan is not None else preflight(config)
        self.config = config
        self.stages = Stages()
        self.latencies = Latencies()
        spec = FrameSpec(config.model.input, input_convention(config.model.kind).pixel_format)
        self._cameras = {}
        for cam in config.camera:
            sampler = Sampler(config.pipeline.detect_fps)
            self._cameras[cam.id] = _CameraState(
                sampler,
                create_source(self.plan.device, cam.id, sampler, spec, self.stages),
                UnitQueue(ACCESS_UNIT_QUEUE),
                lossless=cam.is_file and cam.pace == "fast",
            )
        self._batcher: Batcher[SampledFrame] = Batcher(
            config.pipeline.max_batch, config.pipeline.max_wait_ms / 1e3, config.pipeline.queue_frames
        )
        self._writer = RecordWriter(
            JsonlWriter(
                config.output.dir,
                config.output.prefix,
                rotate_bytes=int(config.output.rotate_mb * 2**20),
                rotate_daily=config.output.rotate_daily,
                fsync=config.output.fsync,
            )
        )
        self._wake = asyncio.Event()  # frames were queued for batching
        self._taken = asyncio.Event()  # a batch was taken: lossless cameras may push again
        self._draining = False  # stopping: the batch loop analyses what waits, then returns
        self._batching: asyncio.Task[None] | None = None  # the batch loop, while running

    @property
    def output_paths(self) -> list[Path]:
        return self._writer.paths

    @property
    def records_written(self) -> int:
        return self._writer.written

    @property
    def records_lost(self) -> int:
        """Records that never reached the output (each loss is also in an ``output_gap`` event
        once the output recovers)."""
        return self._writer.lost

    @property
    def output_recovered(self) -> bool:
        """The output ended healthy: any loss is on record in the files."""
        return self._writer.recovered

    def analysed(self) -> dict[str, int]:
        return {camera: state.analysed for camera, state in self._cameras.items()}

    def internal_errors(self) -> dict[str, int]:
        """Bugs of ours met on each camera's packet path (each restarted that camera's session)."""
        return {camera: state.internal_errors for camera, state in self._cameras.items()}

    # IngestSink: called by the ingest tasks on the event loop.

    def stream_started(self, camera: str, codec: str) -> None:
        state = self._cameras[camera]
        # The decoder may still be behind on the previous session: its tail makes way.
        state.losses["frames_lost"] += state.units.start(StreamStart(codec))

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        state = self._cameras[camera]
        outcome = state.units.put(unit)
        if outcome is not Put.QUEUED:
            state.losses["frames_lost"] += 1
        if outcome is Put.BACKLOG:
            state.losses["decoder_backlog"] += 1

    async def room(self, camera: str) -> None:
        await self._cameras[camera].units.room()

    def event(self, camera: str, event: str, **fields: Any) -> None:
        (log.info if event in ("connected", "end_of_file") else log.warning)(event, camera=camera, **fields)
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
        log.info("device plan", device=self.plan.device, reason=self.plan.reason)
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="decode") as decode_pool,
            ThreadPoolExecutor(1, thread_name_prefix="infer") as infer_pool,
        ):
            detector = await loop.run_in_executor(infer_pool, self._detector)
            self._writer.start()
            ingest = {
                asyncio.create_task(ingest_for(cam, self, self.stages).run(), name=f"ingest-{cam.id}"): cam.id
                for cam in self.config.camera
            }
            decoders = {
                asyncio.create_task(self._decode_loop(state, decode_pool), name=f"decode-{camera}"): camera
                for camera, state in self._cameras.items()
            }
            batching = self._batching = asyncio.create_task(self._batch_loop(detector, infer_pool), name="batch")
            batching.add_done_callback(lambda _: self._taken.set())  # nobody waits on a dead batch loop
            reporting = asyncio.create_task(self._report_loop(), name="report")
            stopped_cleanly = False
            try:
                await self._until_stopped(stop, ingest, decoders, [batching, reporting])
                stopped_cleanly = True
            finally:
                for task in ingest:
                    task.cancel()
                await asyncio.gather(*ingest, return_exceptions=True)
                for state in self._cameras.values():
                    state.units.close()
                await asyncio.gather(*decoders, return_exceptions=True)
                # A batch in flight must not be cancelled (its records would vanish): the batch
                # loop finishes it and what waits, then returns.
                self._draining = True
                self._wake.set()
                reporting.cancel()
                drained, _ = await asyncio.gather(batching, reporting, return_exceptions=True)
                self._report()
                if stopped_cleanly and not isinstance(drained, Exception):
                    self._write([records.event(camera=None, event="stopped", wallclock=time.time(), analysed=self.analysed())])
                await loop.run_in_executor(None, self._writer.close, OUTPUT_CLOSE_S)
            if isinstance(drained, Exception):
                raise drained  # the last batches failed: say so rather than end as if complete

    async def _until_stopped(
        self,
        stop: asyncio.Event,
        ingest: dict[asyncio.Task[None], str],
        decoders: dict[asyncio.Task[None], str],
        services: Sequence[asyncio.Task[None]],
    ) -> None:
        """Until ``stop`` is set or every source has ended and been decoded; a stage that fails
        raises here (a bug: the service stops with it rather than hang)."""
        stopping = asyncio.create_task(stop.wait(), name="stop")
        pending = {stopping, *ingest, *decoders, *services}
        try:
            while not stopping.done() and pending & (ingest.keys() | decoders.keys()):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stopping}:
                    task.result()
                    if task in ingest:  # a clip ended: its decoder finishes what is queued
                        self._cameras[ingest[task]].units.close()
                    elif task not in decoders:
                        raise RuntimeError(f"task {task.get_name()} ended unexpectedly")
        finally:
            stopping.cancel()

    def _detector(self) -> Detector:
        detector = Detector(self.config.model, self.plan, self.config.pipeline.max_batch, stages=self.stages)
        detector.warm_up()
        return detector

    async def _decode_loop(self, state: _CameraState, pool: ThreadPoolExecutor) -> None:
        """Decode the camera's units until its queue closes; then the frames its decoder held."""
        loop = asyncio.get_running_loop()
        while (items := await state.units.take(DECODE_CHUNK)) is not None:
            await self._sampled(state, await loop.run_in_executor(pool, state.source.process, items))
        await self._sampled(state, await loop.run_in_executor(pool, state.source.finish))

    async def _sampled(self, state: _CameraState, decoded: Decoded) -> None:
        """Queue a decode call's frames for batching (a full camera queue drops its oldest)."""
        state.losses["decode_errors"] += decoded.errors
        state.losses["corrupt_frames"] += decoded.corrupt
        if (stream_fps := state.sampler.slow_stream()) is not None:
            self.event(state.source.camera, "detect_fps_clamped", stream_fps=round(stream_fps, 2),
                       detect_fps=self.config.pipeline.detect_fps)
        for frame in decoded.frames:
            if state.lossless:
                await self._batch_room(frame.camera)
            dropped = self._batcher.push(frame.camera, frame, time.monotonic())
            if dropped is not None:
                self._cameras[dropped.camera].drops["queue_full"] += 1
        if decoded.frames:
            self._wake.set()

    async def _batch_room(self, camera: str) -> None:
        """Until ``camera`` may queue a frame without dropping one, or the batch loop is gone."""
        while self._batcher.queued(camera) >= self._batcher.queue_size and not self._batching.done():
            self._wake.set()
            self._taken.clear()
            await self._taken.wait()

    async def _batch_loop(self, detector: Detector, pool: ThreadPoolExecutor) -> None:
        """Analyse batches as they become due; once draining, whatever waits, then return."""
        while True:
            now = time.monotonic()
            if self._batcher.ready(now) or (self._draining and len(self._batcher)):
                await self._analyse(detector, pool)
                continue
            if self._draining:
                return
            deadline = self._batcher.deadline()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if deadline is None else max(0.0, deadline - now))

    async def _analyse(self, detector: Detector, pool: ThreadPoolExecutor) -> None:
        frames = self._batcher.take()
        self._taken.set()
        out = await asyncio.get_running_loop().run_in_executor(pool, self._detect, detector, frames)
        for frame in frames:
            self._cameras[frame.camera].analysed += 1
        self._write(out)

    def _detect(self, detector: Detector, frames: list[SampledFrame]) -> list[dict[str, Any]]:
        """One batch through the detector, as records (on the inference thread)."""
        return analyse(detector, frames, self.latencies, self.stages)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            if self._writer.error is not None:
                raise RuntimeError("the output writer failed; stopping rather than losing every record") from self._writer.error
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
            self._writer.submit(batch)
