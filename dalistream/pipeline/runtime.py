"""The running service: sources → decode → sample → batch → detect → JSON lines.

The runtime only wires the stages. Each camera has an ingest task (RTSP or a clip) that feeds
its :class:`UnitQueue`; a decode task hands chunks of that queue to the camera's
:class:`~dalistream.decode.FrameSource` on a decode thread (one chunk at a time, so each decoder
sees its stream in order) and pushes the sampled frames into the :class:`Batcher`; one batch task
per inference worker (:mod:`~dalistream.engine.shape`) runs batches through its
:class:`~dalistream.engine.detector.Detector` (its own on the CPU; on the GPU one shared,
its stages pipelined) on an inference thread, never taking a frame of a camera whose previous
frame another worker still holds (so each camera's records stay in order).
The stage implementations come from the device plan resolved at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from dalistream import records
from dalistream.config import CameraConfig, Config
from dalistream.decode import Decoded, FrameSource, FrameSpec, SampledFrame, StreamStart, create_source
from dalistream.device import DevicePlan, device_memory
from dalistream.ingest import Ingest, ReceivedAccessUnit, ingest_for
from dalistream.metrics import Latencies, Stages, Telemetry
from dalistream.engine.detector import Detector
from dalistream.models.kinds import input_convention
from dalistream.pipeline.batching import Batcher
from dalistream.pipeline.faces import FaceTracking
from dalistream.pipeline.preflight import preflight
from dalistream.pipeline.sampling import IdleWatch, Sampler, stagger
from dalistream.pipeline.capacity import available_cores
from dalistream.engine.shape import InferenceShape, inference_shape
from dalistream.pipeline.status import STOPPED, AnalysedFrame, CameraStatus, StatusView
from dalistream.pipeline.units import Put, UnitQueue
from dalistream.sinks import RecordRelay, RecordWriter, Sink, SinkState, mqtt_sink, output_writer

log = structlog.get_logger(__name__)

ACCESS_UNIT_QUEUE = 50  # per camera: 2 s of 25 fps video waiting for the decoder
DECODE_CHUNK = 8  # access units handed to a decode thread at once
REPORT_INTERVAL_S = 1.0  # how often loss/drop counts become events
ROUTINE_EVENTS = frozenset({"connected", "end_of_file", "added", "removed", "idle", "active"})  # logged at info, the rest warn
OUTPUT_CLOSE_S = 5.0  # at shutdown, how long a refusing disk is retried before the rest is lost
SILENT_SLACK_S = 1.0  # beyond tracks.max_missed_s, how long a camera with faces in view may send nothing


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


LOSS_KEYS = ("packets_lost", "frames_lost", "malformed_packets", "decoder_backlog", "decode_errors", "corrupt_frames")


class CameraExists(ValueError):
    """A camera with that id is already running."""


@dataclass(frozen=True, slots=True)
class CameraReport:
    """One camera's configuration, state and running totals (since it was added)."""

    config: CameraConfig
    status: StatusView
    packets: int  # RTP packets received
    counts: dict[str, int]  # access_units, frames_decoded, frames_analysed, faces, reconnects, internal_errors
    losses: dict[str, int]  # by LOSS_KEYS
    dropped: dict[str, int]  # sampled frames dropped before analysis, by reason
    queued_units: int  # access units waiting for the decoder
    queued_frames: int  # sampled frames waiting for a batch
    next_seq: int  # the seq its next sampled frame gets
    latest: AnalysedFrame | None
    worker: str | None = None  # the cluster worker running it (cluster mode)
    next_track: int = 1  # the id its next face track gets


@dataclass(slots=True)
class _Camera:
    config: CameraConfig
    sampler: Sampler
    source: FrameSource
    units: UnitQueue
    status: CameraStatus
    counts: Counter = field(default_factory=Counter)  # running totals
    losses: Counter = field(default_factory=Counter)  # running totals; their growth becomes gap events
    reported_losses: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)  # running totals by reason; growth → dropped events
    reported_drops: Counter = field(default_factory=Counter)
    in_flight: int = 0  # frames in the batch being analysed
    idle_watch: IdleWatch | None = None  # pipeline.adaptive
    ingest: Ingest | None = None
    ingest_task: asyncio.Task[None] | None = None
    decode_task: asyncio.Task[None] | None = None
    removing: bool = False

    @property
    def lossless(self) -> bool:
        """A clip read as fast as the pipeline goes: wait for room, never drop."""
        return self.config.is_file and self.config.pace == "fast"


class Runtime:
    """Runs the whole pipeline until :meth:`run`'s ``stop`` event is set (or every camera is a
    clip that ended), then flushes. Cameras can be added and removed while it runs; the others
    never wait for that.

    ``plan`` defaults to :func:`preflight`'s, which also refuses what cannot run here; ``cores``
    (what decode threads and CPU inference are sized to) to the cores this process may use;
    ``writer`` (where records go) to the ``[output]`` files. Records go to the sinks: that
    writer, and the broker with ``[mqtt]`` (``mqtt_availability``: this process owns the
    broker's ``available`` topic; a cluster worker does not).
    """

    def __init__(self, config: Config, plan: DevicePlan | None = None, cores: int | None = None,
                 writer: RecordWriter | RecordRelay | None = None, *, mqtt_availability: bool = True) -> None:
        self.plan = plan if plan is not None else preflight(config)
        self.config = config
        self.cores = cores or available_cores()
        self.shape: InferenceShape = inference_shape(config.pipeline, config.model, self.plan.device, self.cores)
        self.telemetry = Telemetry()
        self.stages = Stages(self.telemetry.stage_cost)
        self.latencies = Latencies()
        self._loop: asyncio.AbstractEventLoop | None = None  # set while running
        self._faces = FaceTracking(config, self.stages, self._emit)
        self._spec = FrameSpec(config.model.input, input_convention(config.model.kind).pixel_format, crops=self._faces.crops,
                               skip_loop_filter=config.pipeline.skip_loop_filter)
        self._cameras: dict[str, _Camera] = {}
        self._ordinals = itertools.count()  # each camera's sampling phase: stagger(its ordinal)
        for cam in config.camera:
            self._cameras[cam.id] = self._camera(cam)
        self._batcher: Batcher[SampledFrame] = Batcher(
            self.shape.max_batch, config.pipeline.max_wait_ms / 1e3, config.pipeline.queue_frames
        )
        self._writer = writer if writer is not None else output_writer(config.output)
        self._mqtt = mqtt_sink(config.mqtt, config.output.dir, self._writer.submit, availability=mqtt_availability)
        self._sinks: list[Sink] = [self._writer, *([self._mqtt] if self._mqtt is not None else [])]
        self._wake = asyncio.Event()  # frames were queued for batching
        self._taken = asyncio.Event()  # a batch was taken: lossless cameras may push again
        self._written = asyncio.Event()  # a batch's records were written
        self._draining = False  # stopping: the batch loop analyses what waits, then returns
        self._batch_loops: list[asyncio.Task[None]] = []  # one per inference worker, while running
        self._detectors: list[Detector] = []  # once loaded
        self._decode_pool: ThreadPoolExecutor | None = None  # set while running
        self._failure: asyncio.Future[None] | None = None  # a camera task's bug, raised by run()
        self._ended: asyncio.Event | None = None  # every camera's source ended by itself
        self.ready = False  # the detector is loaded and the cameras are started

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

    @property
    def output_problem(self) -> str | None:
        """Why records (or face crops) are not reaching the output right now, or None."""
        crops = None if self._faces.writer is None else self._faces.writer.problem
        return self._writer.problem or (None if crops is None else f"face crops: {crops}")

    @property
    def output_failed(self) -> bool:
        """The writer itself failed (a bug): nothing more will be written."""
        return self._writer.error is not None

    @property
    def output_queued(self) -> int:
        """Records waiting for the disk."""
        return self._writer.queued

    def sink_states(self) -> list[SinkState]:
        """Every sink's state (the files first)."""
        return [sink.state() for sink in self._sinks]

    def publish_stats(self, summary: dict[str, Any]) -> None:
        """Publish ``summary`` (the ``/health`` JSON) to the broker's stats topic, with ``[mqtt]``."""
        if self._mqtt is not None:
            self._mqtt.stats(summary)

    @property
    def batch_queued(self) -> int:
        """Sampled frames, all cameras, waiting for a batch."""
        return len(self._batcher)

    def stream_busy_ms(self) -> dict[str, float]:
        """Device milliseconds each stage's streams have been busy, all detectors (GPU only)."""
        busy: Counter[str] = Counter()
        for detector in self._detectors:
            busy.update(detector.streams.busy_ms())
        return dict(busy)

    def analysed(self) -> dict[str, int]:
        return {camera: state.counts["frames_analysed"] for camera, state in self._cameras.items()}

    def internal_errors(self) -> dict[str, int]:
        """Bugs of ours met on each camera's packet path (each restarted that camera's session)."""
        return {camera: state.counts["internal_errors"] for camera, state in self._cameras.items()}

    def cameras(self) -> list[CameraConfig]:
        """The cameras running now, in the order they were added."""
        return [state.config for state in self._cameras.values() if not state.removing]

    def report(self, camera: str) -> CameraReport:
        """``camera``'s state and totals; KeyError when it is not running."""
        state = self._cameras[camera]
        if state.removing:
            raise KeyError(camera)
        return self._report_of(state)

    def _report_of(self, state: _Camera) -> CameraReport:
        return CameraReport(
            config=state.config,
            status=state.status.view(),
            packets=state.ingest.packets if state.ingest is not None else 0,
            counts=dict(state.counts),
            losses={key: state.losses[key] for key in LOSS_KEYS},
            dropped=dict(state.drops),
            queued_units=len(state.units),
            queued_frames=self._batcher.queued(state.config.id),
            next_seq=state.source.next_seq,
            latest=state.status.latest,
            next_track=self._faces.next_track(state.config.id),
        )

    async def latest_frame(self, camera: str) -> AnalysedFrame | None:
        """``camera``'s last analysed frame (for snapshots); KeyError when it is not running."""
        return self.report(camera).latest

    async def faces(self, camera: str) -> list[dict[str, Any]]:
        """``camera``'s live and recently ended face tracks, latest first; KeyError when it is not running."""
        self.report(camera)
        return self._faces.views(camera)

    # Cameras at run time.

    def add_camera(self, camera: CameraConfig, *, first_seq: int = 0, first_track: int = 1, event: str = "added",
                   **fields: Any) -> None:
        """Start ``camera`` (validated by the caller) beside the others: an ``event`` record
        (``added``; ``moved`` with where from, for a camera another worker ran) then its own
        ``connected``; its frames' ``seq`` start at ``first_seq``, its face tracks at
        ``first_track``. Raises :class:`CameraExists` for an id in use."""
        if camera.id in self._cameras:
            raise CameraExists(f"camera {camera.id!r} is already running")
        state = self._cameras[camera.id] = self._camera(camera, first_track)
        state.source.next_seq = first_seq
        self.event(camera.id, event, **fields)
        if self._decode_pool is not None:
            self._launch(state)

    async def remove_camera(self, camera: str, **fields: Any) -> CameraReport:
        """Stop ``camera``: its session ends, what it already sent is analysed, its faces in view
        leave (``reason``: ``moved`` when ``fields`` has ``moved_to``, else ``camera_stopped``),
        a ``removed`` event (with ``fields``) is its last record; returns its final report. The
        other cameras go on as they were. KeyError when absent."""
        state = self._cameras[camera]
        if state.removing:
            raise KeyError(camera)
        state.removing = True
        if state.ingest_task is not None:
            state.ingest_task.cancel()
            await asyncio.gather(state.ingest_task, return_exceptions=True)
        state.units.close()
        if state.decode_task is not None:
            await asyncio.gather(state.decode_task, return_exceptions=True)
        while (self._batcher.queued(camera) or state.in_flight) and self._batching_alive():
            self._written.clear()
            self._wake.set()
            await self._written.wait()
        self._write(self._faces.end(camera, "moved" if "moved_to" in fields else "camera_stopped"))
        self._report_camera(camera, state)
        state.status.stopped()
        final = self._report_of(state)
        self.event(camera, "removed", analysed=state.counts["frames_analysed"], **fields)
        del self._cameras[camera]
        self._faces.remove(camera)
        return final

    def _camera(self, camera: CameraConfig, first_track: int = 1) -> _Camera:
        pipeline = self.config.pipeline
        sampler = Sampler(pipeline.detect_fps, stagger(next(self._ordinals)))
        source = create_source(self.plan.device, camera.id, sampler, self._spec, self.stages, pipeline.gpu_decode)
        self._faces.add(camera.id, first_track)
        return _Camera(
            camera,
            sampler,
            source,
            UnitQueue(ACCESS_UNIT_QUEUE),
            CameraStatus(),
            idle_watch=IdleWatch(pipeline.adaptive_idle_s) if pipeline.adaptive else None,
        )

    def _launch(self, state: _Camera) -> None:
        """Start ``state``'s ingest and decode tasks (on the running event loop)."""
        name = state.config.id
        state.ingest = ingest_for(state.config, self, self.stages)
        state.ingest_task = asyncio.create_task(state.ingest.run(), name=f"ingest-{name}")
        state.ingest_task.add_done_callback(lambda task: self._ingest_ended(state, task))
        state.decode_task = asyncio.create_task(self._decode_loop(state, self._decode_pool), name=f"decode-{name}")
        state.decode_task.add_done_callback(lambda task: self._decode_ended(state, task))

    def _ingest_ended(self, state: _Camera, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            self._fail(error)
        else:  # a clip ended: its decoder finishes what is queued
            state.units.close()

    def _decode_ended(self, state: _Camera, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            self._fail(error)
            return
        state.status.stopped()
        if not state.removing and all(s.decode_task is not None and s.decode_task.done() for s in self._cameras.values()):
            self._ended.set()

    def _fail(self, error: BaseException) -> None:
        """A camera task raised: a bug of ours. :meth:`run` raises it (the service stops)."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(error)

    # IngestSink: called by the ingest tasks on the event loop.

    def stream_started(self, camera: str, codec: str) -> None:
        state = self._cameras[camera]
        # The decoder may still be behind on the previous session: its tail makes way.
        state.losses["frames_lost"] += state.units.start(StreamStart(codec))

    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None:
        state = self._cameras[camera]
        state.counts["access_units"] += 1
        state.status.unit()
        outcome = state.units.put(unit)
        if outcome is not Put.QUEUED:
            state.losses["frames_lost"] += 1
        if outcome is Put.BACKLOG:
            state.losses["decoder_backlog"] += 1

    async def room(self, camera: str) -> None:
        await self._cameras[camera].units.room()

    def event(self, camera: str, event: str, **fields: Any) -> None:
        (log.info if event in ROUTINE_EVENTS else log.warning)(event, camera=camera, **fields)
        record = records.event(camera=camera, event=event, wallclock=time.time(), **fields)
        if (state := self._cameras.get(camera)) is not None:
            state.status.event(event, fields, record["wallclock"])
            if event == "reconnecting":
                state.counts["reconnects"] += 1
        self._write([record])

    def lost(self, camera: str, *, packets: int = 0, frames: int = 0, malformed: int = 0) -> None:
        losses = self._cameras[camera].losses
        losses["packets_lost"] += packets
        losses["frames_lost"] += frames
        losses["malformed_packets"] += malformed

    def internal_error(self, camera: str, error: Exception) -> None:
        self._cameras[camera].counts["internal_errors"] += 1
        log.error("internal error on a camera's packet path; restarting its session", camera=camera, exc_info=error)

    # The service.

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        threads = self.config.pipeline.decode_threads or self.cores
        log.info("device plan", device=self.plan.device, reason=self.plan.reason, **self.shape.as_dict())
        self._failure = loop.create_future()
        self._ended = asyncio.Event()
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="decode") as decode_pool,
            ThreadPoolExecutor(self.shape.workers, thread_name_prefix="infer") as infer_pool,
        ):
            detectors = self._detectors = await asyncio.gather(
                *(loop.run_in_executor(infer_pool, self._detector) for _ in range(self.shape.detectors))
            )
            log.info("detectors ready", detectors=len(detectors), workers=self.shape.workers, **device_memory(self.plan.device))
            self._loop = loop
            for sink in self._sinks:
                sink.start()
            if self._faces.writer is not None:
                self._faces.writer.start()
            self._decode_pool = decode_pool
            for state in self._cameras.values():
                self._launch(state)
            self.ready = True
            batching = self._batch_loops = [
                asyncio.create_task(self._batch_loop(detectors[i % len(detectors)], infer_pool), name=f"batch-{i}")
                for i in range(self.shape.workers)
            ]
            for task in batching:
                task.add_done_callback(lambda _: self._taken.set())  # nobody waits on a dead batch loop
            reporting = asyncio.create_task(self._report_loop(), name="report")
            stopped_cleanly = False
            try:
                await self._until_stopped(stop, [*batching, reporting])
                stopped_cleanly = True
            finally:
                self.ready = False
                cameras = list(self._cameras.values())
                ingest = [s.ingest_task for s in cameras if s.ingest_task is not None]
                for task in ingest:
                    task.cancel()
                await asyncio.gather(*ingest, return_exceptions=True)
                for state in cameras:
                    state.units.close()
                await asyncio.gather(*(s.decode_task for s in cameras if s.decode_task is not None), return_exceptions=True)
                self._decode_pool = None
                # A batch in flight must not be cancelled (its records would vanish): the batch
                # loops finish theirs and what waits, then return.
                self._draining = True
                self._wake.set()
                reporting.cancel()
                *ends, _ = await asyncio.gather(*batching, reporting, return_exceptions=True)
                drained = next((end for end in ends if isinstance(end, Exception)), None)
                for camera in cameras:
                    self._write(self._faces.end(camera.config.id, "service_stopped"))
                self._report()
                if self._faces.writer is not None:
                    await loop.run_in_executor(None, self._faces.writer.close, OUTPUT_CLOSE_S)
                if stopped_cleanly and drained is None:
                    self._write([records.event(camera=None, event="stopped", wallclock=time.time(), analysed=self.analysed())])
                for sink in reversed(self._sinks):  # the files last: the others report into them
                    await loop.run_in_executor(None, sink.close, OUTPUT_CLOSE_S)
            if drained is not None:
                raise drained  # the last batches failed: say so rather than end as if complete

    async def _until_stopped(self, stop: asyncio.Event, services: Sequence[asyncio.Task[None]]) -> None:
        """Until ``stop`` is set or every source has ended and been decoded; a stage that fails
        raises here (a bug: the service stops with it rather than hang)."""
        waits = [asyncio.create_task(stop.wait(), name="stop"), asyncio.create_task(self._ended.wait(), name="ended")]
        try:
            done, _ = await asyncio.wait([*waits, self._failure, *services], return_when=asyncio.FIRST_COMPLETED)
            for task in done - set(waits):
                task.result()  # a failure raises; a service that returned is a bug too
                raise RuntimeError(f"task {task.get_name()} ended unexpectedly")
        finally:
            for task in waits:
                task.cancel()

    def _detector(self) -> Detector:
        model = dataclasses.replace(self.config.model, intra_op_threads=self.shape.intra_op_threads)
        detector = Detector(model, self.plan, self.shape.max_batch, stages=self.stages, buffers=self.shape.buffers)
        detector.warm_up()
        return detector

    async def _decode_loop(self, state: _Camera, pool: ThreadPoolExecutor) -> None:
        """Decode the camera's units until its queue closes; then the frames its decoder held."""
        loop = asyncio.get_running_loop()
        while (items := await state.units.take(DECODE_CHUNK)) is not None:
            await self._sampled(state, await loop.run_in_executor(pool, state.source.process, items))
        await self._sampled(state, await loop.run_in_executor(pool, state.source.finish))

    async def _sampled(self, state: _Camera, decoded: Decoded) -> None:
        """Queue a decode call's frames for batching (a full camera queue drops its oldest)."""
        state.counts["frames_decoded"] += decoded.decoded
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
        while self._batcher.queued(camera) >= self._batcher.queue_size and self._batching_alive():
            self._wake.set()
            self._taken.clear()
            await self._taken.wait()

    def _batching_alive(self) -> bool:
        return any(not task.done() for task in self._batch_loops)

    def _busy(self) -> set[str]:
        """Cameras with a frame being analysed: no other worker takes their next frames yet."""
        return {camera for camera, state in self._cameras.items() if state.in_flight}

    async def _batch_loop(self, detector: Detector, pool: ThreadPoolExecutor) -> None:
        """Analyse batches as they become due; once draining, whatever waits that this loop
        may take, then return (a camera another loop holds is that loop's to finish)."""
        while True:
            now = time.monotonic()
            busy = self._busy()
            if self._batcher.ready(now, busy) or (self._draining and self._batcher.waiting(busy)):
                await self._analyse(detector, pool, busy)
                continue
            if self._draining:
                return
            deadline = self._batcher.deadline(busy)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if deadline is None else max(0.0, deadline - now))

    async def _analyse(self, detector: Detector, pool: ThreadPoolExecutor, busy: set[str]) -> None:
        frames = self._batcher.take(busy)
        self._taken.set()
        cameras = [self._cameras[frame.camera] for frame in frames]
        for state in cameras:
            state.in_flight += 1
        try:
            out, events = await asyncio.get_running_loop().run_in_executor(pool, self._detect, detector, frames)
            for state, frame, record in zip(cameras, frames, out):
                state.counts["frames_analysed"] += 1
                state.counts["faces"] += len(record["faces"])
                state.status.analysed(AnalysedFrame(frame.image, self._spec.pixel_format, frame.letterbox, record))
            self._write([line for record, more in zip(out, events) for line in (record, *more)])
            for state, frame, record in zip(cameras, frames, out):
                if state.idle_watch is not None:
                    tracked = self._faces.live(state.config.id)
                    self._adapt(state, state.idle_watch.analysed(frame.received, len(record["faces"]), tracked))
        finally:
            for state in cameras:
                state.in_flight -= 1
            self._written.set()
            self._wake.set()  # its cameras' next frames may be taken now

    def _adapt(self, state: _Camera, idle: bool | None) -> None:
        """``pipeline.adaptive``: a camera that went idle is sampled at the idle rate, one that
        showed a face again at ``detect_fps``, each change an event."""
        if idle is None:
            return
        pipeline = self.config.pipeline
        fps = pipeline.adaptive_idle_fps if idle else pipeline.detect_fps
        state.sampler.retarget(fps)
        if idle:
            self.event(state.config.id, "idle", fps=fps, no_face_s=pipeline.adaptive_idle_s)
        else:
            self.event(state.config.id, "active", fps=fps)

    def _detect(self, detector: Detector, frames: list[SampledFrame]) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        """One batch through the detector and the face tracks (on the inference thread): the
        records, and each one's face events."""
        out = analyse(detector, frames, self.latencies, self.stages)
        self.telemetry.batch.observe(len(frames))
        for record in out:
            self.telemetry.latency.observe(record["latency_ms"] / 1e3)
        return out, [self._faces.track(frame, record) for frame, record in zip(frames, out)]

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            if self._writer.error is not None:
                raise RuntimeError("the output writer failed; stopping rather than losing every record") from self._writer.error
            if self._faces.writer is not None and self._faces.writer.error is not None:
                raise RuntimeError("the face crop writer failed; stopping rather than losing every crop") from self._faces.writer.error
            self._report()

    def _report(self) -> None:
        """Turn the loss and drop counts since the last report into events."""
        for camera, state in list(self._cameras.items()):
            self._report_camera(camera, state)

    def _report_camera(self, camera: str, state: _Camera) -> None:
        if losses := state.losses - state.reported_losses:
            self.event(camera, "gap", **losses)
            state.reported_losses = state.losses.copy()
        for reason, frames in (state.drops - state.reported_drops).items():
            self.event(camera, "dropped", frames=frames, reason=reason)
        state.reported_drops = state.drops.copy()
        for reason, faces in self._faces.untracked(camera).items():
            self.event(camera, "faces_untracked", faces=faces, reason=reason)
        if self.ready and self._faces.live(camera) and not (state.in_flight or self._batcher.queued(camera) or len(state.units)):
            # Faces still in view of a clip that ended, or of a camera that sent nothing for
            # longer than a face may be missed: they left (no frame is on its way to say so).
            last_unit = state.status.last_unit
            if state.status.state == STOPPED and state.decode_task is not None and state.decode_task.done():
                self._write(self._faces.end(camera, "camera_stopped"))
            elif last_unit is not None and time.monotonic() - last_unit > self.config.tracks.max_missed_s + SILENT_SLACK_S:
                self._write(self._faces.end(camera, "missed"))

    def _emit(self, batch: list[dict[str, Any]]) -> None:
        """Write records from another thread (the crop writer's events)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._write, batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        with self.stages.measure("write", len(batch)):
            for sink in self._sinks:
                sink.submit(batch)
