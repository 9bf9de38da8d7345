"""The cluster's coordinator: the driver of ``python -m dalistream --config site.toml`` with a
``[cluster]`` table.

It asks Ray for one :class:`~dalistream.cluster.worker.Worker` actor per worker at once
(:mod:`dalistream.cluster.workers`: a worker Ray cannot place is ``pending``, with the reason in
words, until a node with room lets Ray start it), and places cameras
(:mod:`dalistream.cluster.planner`, costs from the capacity plan) on each worker as it becomes
ready: the first ready worker takes cameras up to its capacity, later ones the rest. Every
second it asks each ready worker for its health. A worker that died (its actor, its
process, its node) or whose health does not answer within ``cluster.health_timeout_s`` is
dropped: its cameras go to the survivors with room, each with a ``moved`` event and its ``seq``
continued; cameras no survivor can hold are ``unplaced`` (an event, and their state in
``/health``) until a worker has room, and resume with ``moved`` all the same. Lost workers are
asked for again at once (pending until Ray has the resources); running cameras move onto them
only when ``cluster.rebalance_s`` allows. With ``cluster.gather_output`` the workers' records
are collected every second and written to the coordinator's files.

To the HTTP layer and to :class:`~dalistream.service.control.CameraControl` it looks like a
:class:`~dalistream.pipeline.runtime.Runtime`: the same ``cameras()``, ``report()``,
``add_camera()``, ``remove_camera()``, so ``/health``, ``/api/v1/cameras`` and SIGHUP work the
same, cluster-wide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
import structlog
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from dalistream import records
from dalistream.config import CameraConfig, Config
from dalistream.device import GPU, DevicePlan
from dalistream.pipeline import capacity
from dalistream.pipeline.runtime import CameraExists, CameraReport, LOSS_KEYS
from dalistream.pipeline.status import UNPLACED, AnalysedFrame, CameraStatus
from dalistream.service.metrics import mqtt_metrics
from dalistream.sinks import Sink, SinkState, mqtt_sink, output_writer

from . import planner, ray_cluster, resources
from .workers import PENDING, READY, STARTING, WorkerHandle, Workers

log = structlog.get_logger(__name__)

TICK_S = 1.0  # how often every worker is asked for its health
SEQ_SLACK_S = 3.0  # after a worker died: frames it may have analysed beyond its last report (its queues hold ~2 s)
OUTPUT_CLOSE_S = 5.0


class Coordinator:
    """Runs ``config``'s cameras on a Ray cluster (see the module docstring)."""

    def __init__(self, config: Config, plan: DevicePlan) -> None:
        if config.cluster is None:
            raise ValueError("the coordinator needs a [cluster] table")
        self.config = config
        self.plan = plan
        self._cluster = config.cluster
        self._cameras: dict[str, CameraConfig] = {camera.id: camera for camera in config.camera}
        self._tables = capacity.load_tables()
        self._demands_of = {camera.id: self._price(camera) for camera in config.camera}  # priced once, not per tick
        self._placement = planner.Placement()
        self._workers = Workers(config, plan.device, on_ready=self._ready, event=lambda event, **fields: self._event(None, event, **fields))
        self._seq: dict[str, tuple[int, float]] = {}  # camera → (next seq, clock time of that report)
        self._unplaced: dict[str, str] = {}  # cameras said to have no room (an event) → why
        self._next_track: dict[str, int] = {}  # camera → the id of its next face track, as last reported
        self._files: set[Path] = set()  # the workers' output files
        self._last_change = time.monotonic()
        self._pending: set[asyncio.Task[Any]] = set()  # camera adds and moves in flight
        self._running = False
        self._writer = output_writer(config.output, f"{config.output.prefix}-coordinator")
        self._mqtt = mqtt_sink(config.mqtt, config.output.dir, self._writer.submit)  # its events, stats, availability
        self._sinks: list[Sink] = [self._writer, *([self._mqtt] if self._mqtt is not None else [])]
        self.registry = CollectorRegistry()
        self.registry.register(_ClusterCollector(self))
        ProcessCollector(namespace="dalistream_coordinator", registry=self.registry)

    # What the HTTP layer and CameraControl read, as from a Runtime.

    @property
    def ready(self) -> bool:
        """Running, with a worker that can take cameras."""
        return self._running and bool(self._workers.in_state(READY))

    @property
    def records_written(self) -> int:
        return self._writer.written + sum(w.health.get("output", {}).get("records_written", 0) for w in self._workers)

    @property
    def records_lost(self) -> int:
        return self._writer.lost + sum(w.health.get("output", {}).get("records_lost", 0) for w in self._workers)

    @property
    def output_problem(self) -> str | None:
        problems = [f"{w.id}: {w.health['output']['problem']}" for w in self._workers if w.health.get("output", {}).get("problem")]
        if self._writer.problem is not None:
            problems.insert(0, f"coordinator: {self._writer.problem}")
        return "; ".join(problems) or None

    @property
    def output_failed(self) -> bool:
        return self._writer.error is not None or any(w.health.get("output", {}).get("failed") for w in self._workers)

    @property
    def output_recovered(self) -> bool:
        return self._writer.recovered

    @property
    def output_paths(self) -> list[Path]:
        """The coordinator's files and every worker's (lost ones' included)."""
        return [*self._writer.paths, *sorted(self._files)]

    def sink_states(self) -> list[SinkState]:
        """The coordinator's sinks, then each worker's (named ``<worker>/<sink>``)."""
        states = [sink.state() for sink in self._sinks]
        for worker in self._workers:
            states += [dataclasses.replace(state, name=f"{worker.id}/{state.name}") for state in worker.health.get("sinks", [])]
        return states

    def publish_stats(self, summary: dict[str, Any]) -> None:
        if self._mqtt is not None:
            self._mqtt.stats(summary)

    def cameras(self) -> list[CameraConfig]:
        return list(self._cameras.values())

    def analysed(self) -> dict[str, int]:
        return {camera: self.report(camera).counts.get("frames_analysed", 0) for camera in self._cameras}

    def internal_errors(self) -> dict[str, int]:
        return {camera: self.report(camera).counts.get("internal_errors", 0) for camera in self._cameras}

    def report(self, camera: str) -> CameraReport:
        """The camera's last report from its worker; ``connecting`` until there is one (and
        while it waits for a worker that is starting), ``unplaced`` while no worker has room.
        KeyError when it is not in the cluster."""
        config = self._cameras[camera]
        worker = self._placement.assignment.get(camera)
        if worker in self._workers.by_id and camera in self._workers.by_id[worker].reports:
            return dataclasses.replace(self._workers.by_id[worker].reports[camera], worker=worker)
        status = CameraStatus().view()
        if camera in self._unplaced:
            status = dataclasses.replace(status, state=UNPLACED, last_error=self._unplaced[camera])
        return CameraReport(config, status, 0, {}, {key: 0 for key in LOSS_KEYS}, {}, 0, 0, 0, None, worker)

    async def faces(self, camera: str) -> list[dict[str, Any]]:
        """``camera``'s face tracks, from its worker (none while it is unplaced); KeyError when
        it is not in the cluster."""
        if camera not in self._cameras:
            raise KeyError(camera)
        worker = self._workers.get(self._placement.assignment.get(camera, ""))
        return [] if worker is None else await worker.actor.faces.remote(camera)

    async def latest_frame(self, camera: str) -> AnalysedFrame | None:
        """``camera``'s last analysed frame, fetched from its worker (None while it has none or
        is unplaced); KeyError when it is not in the cluster."""
        if camera not in self._cameras:
            raise KeyError(camera)
        worker = self._workers.by_id.get(self._placement.assignment.get(camera, ""))
        return None if worker is None or worker.state != READY else await worker.actor.latest_frame.remote(camera)

    def workers(self) -> list[dict[str, Any]]:
        """``/health``'s ``workers`` list: every worker asked for, ready, starting (Ray placed
        it, its model loads) or pending (Ray cannot place it: ``reason``)."""
        return [
            {"id": w.id, "state": w.state, **({"reason": w.reason} if w.state == PENDING else {}),
             "node": w.health.get("node"), "pid": w.health.get("pid", w.pid or None), "device": w.health.get("device"),
             "resources": w.ask, "cameras": list(self._placement.cameras_of(w.id)),
             "capacity_cores": round(w.capacity, 3), "load_cores": round(self._placement.load(w.id), 3)}
            for w in self._workers
        ]

    def admission(self, running: list[CameraConfig], candidate: CameraConfig) -> str | None:
        """Why no live worker can hold ``candidate`` (None when one can)."""
        return planner.add(self._placement, self._slots(), self._price(candidate))[1]

    def add_camera(self, camera: CameraConfig, **_: Any) -> None:
        """Place ``camera`` on the live worker with the most room and start it there (or keep
        it waiting until one has room). Raises :class:`CameraExists` for an id in use."""
        if camera.id in self._cameras:
            raise CameraExists(f"camera {camera.id!r} is already in the cluster")
        self._cameras[camera.id] = camera
        demand = self._demands_of[camera.id] = self._price(camera)
        placement, reason = planner.add(self._placement, self._slots(), demand)
        if reason is not None:
            self._waiting([camera.id], reason)
            return
        self._placement = placement
        self._spawn(self._start_camera(camera.id, placement.assignment[camera.id], 0, None))

    async def remove_camera(self, camera: str, **fields: Any) -> CameraReport:
        """Stop ``camera`` wherever it runs; returns its last report."""
        final = self.report(camera)
        worker = self._placement.assignment.get(camera)
        del self._cameras[camera], self._demands_of[camera]
        self._placement = planner.remove(self._placement, camera)
        self._unplaced.pop(camera, None)
        self._seq.pop(camera, None)
        self._next_track.pop(camera, None)
        if worker in self._workers.by_id:
            await self._workers.by_id[worker].actor.remove.remote(camera)
        return final

    # Running the cluster.

    def connect(self) -> None:
        """Join the Ray cluster (or start a local one); :class:`~dalistream.cluster.ray_cluster.JoinError`
        when it cannot. Call it from the main thread before the service installs its signal
        handlers: Ray installs its own, which must not stay."""
        ray_cluster.join(self._cluster.address)
        log.info("ray cluster", address=self._cluster.address or "local", resources=ray.cluster_resources())

    async def run(self, stop: asyncio.Event) -> None:
        for sink in self._sinks:
            sink.start()
        self._running = True
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            self._workers.top_up(await self._wanted_workers(), len(self._cameras))
            while not stop.is_set():
                tick = asyncio.create_task(self._tick(), name="tick")
                await asyncio.wait([tick, stopped], return_when=asyncio.FIRST_COMPLETED)
                if not tick.done():  # a stop does not wait for a worker's health to time out
                    tick.cancel()
                    await asyncio.gather(tick, return_exceptions=True)
                    break
                tick.result()
                await asyncio.wait([stopped], timeout=TICK_S)
        finally:
            stopped.cancel()
            self._running = False
            for task in self._pending:
                task.cancel()
            await self._workers.stop(self._stopped)
            self._event(None, "stopped", analysed=self.analysed())
            loop = asyncio.get_running_loop()
            for sink in reversed(self._sinks):  # the files last: the others report into them
                await loop.run_in_executor(None, sink.close, OUTPUT_CLOSE_S)
            await loop.run_in_executor(None, ray.shutdown)

    async def _tick(self) -> None:
        """Ask every ready worker for its health; move the cameras of those that do not answer;
        follow the workers Ray has not placed or that still load; ask for lost ones again;
        place what waits; rebalance when allowed."""
        ready = self._workers.in_state(READY)
        answers = await asyncio.gather(*(self._ask(worker) for worker in ready), return_exceptions=True)
        for worker, answer in zip(ready, answers):
            if isinstance(answer, BaseException) and worker.id in self._workers.by_id:
                self._lose(worker, answer)
        await self._workers.follow()
        self._workers.top_up(await self._wanted_workers(), len(self._cameras))
        self._place()
        placement, moves = planner.rebalance(self._placement, self._slots(), now=time.monotonic(),
                                             last_change_at=self._last_change, rebalance_s=self._cluster.rebalance_s)
        if moves:
            self._placement = placement
            self._last_change = time.monotonic()
            for move in moves:
                self._spawn(self._move(move.camera, move.source, move.target))

    def _ready(self, worker: WorkerHandle, health: dict[str, Any]) -> None:
        """A worker loaded its model: it takes cameras that wait, at once."""
        self._took(worker, health)
        self._last_change = time.monotonic()
        self._place()

    async def _ask(self, worker: WorkerHandle) -> None:
        async with worker.taking:
            calls = [worker.actor.health.remote(), worker.actor.metrics.remote()]
            if self._cluster.gather_output:
                calls.append(worker.actor.take_records.remote())
            health, metrics, *taken = await asyncio.wait_for(asyncio.gather(*calls), self._cluster.health_timeout_s)
            worker.metrics = metrics
            self._took(worker, {**health, "records": taken[0] if taken else []})

    def _took(self, worker: WorkerHandle, health: dict[str, Any]) -> None:
        """A worker's answer: its health, each camera's report (and ``seq``), its records."""
        now = time.monotonic()
        worker.health = health
        worker.reports = health["reports"]
        self._files.update(Path(path) for path in health["files"])
        for camera, report in worker.reports.items():
            self._seq[camera] = (report.next_seq, now)
            self._next_track[camera] = report.next_track
        self._gather(worker, health.get("records", []))

    def _gather(self, worker: WorkerHandle, taken: Iterable[Mapping[str, Any]]) -> None:
        """Write a worker's records into the coordinator's files (and publish them, with
        ``[mqtt]``); its own events (no camera) say which worker they are from."""
        batch = [record if record["camera"] is not None else {**record, "worker": worker.id} for record in taken]
        for sink in self._sinks:  # the files, and the broker: published where they are written
            sink.submit(batch)

    def _lose(self, worker: WorkerHandle, error: BaseException) -> None:
        reason = "its health did not answer" if isinstance(error, TimeoutError) else ray_cluster.failure_reason(error)
        cameras = list(self._placement.cameras_of(worker.id))
        log.error("cluster worker lost; its cameras move", worker=worker.id, pid=worker.health.get("pid"), cameras=cameras, reason=reason)
        self._event(None, "worker_lost", worker=worker.id, pid=worker.health.get("pid"), reason=reason, cameras=cameras)
        self._workers.drop(worker)
        self._last_change = time.monotonic()
        self._place()

    def _place(self) -> None:
        """Start every camera that has no live worker on a ready one with room (:func:`planner.place`):
        its ``seq`` continued past what a lost worker may have written, a ``moved`` event when
        it ran elsewhere before; the others wait."""
        placement, moves = planner.place(self._placement, self._slots(), self._demands())
        self._placement = placement
        waiting = []
        for move in moves:
            if move.target is None:
                waiting.append(move.camera)
                continue
            self._unplaced.pop(move.camera, None)
            first_seq, first_track = 0, 1
            if move.camera in self._seq:
                next_seq, reported_at = self._seq[move.camera]
                frames = math.ceil(self.config.pipeline.detect_fps * (time.monotonic() - reported_at + SEQ_SLACK_S))
                first_seq = next_seq + frames
                # Each frame since the last report may have started up to max_per_camera tracks.
                first_track = self._next_track.get(move.camera, 1) + frames * self.config.tracks.max_per_camera
            self._seq[move.camera] = (first_seq, time.monotonic())
            self._next_track[move.camera] = first_track
            self._spawn(self._start_camera(move.camera, move.target, first_seq, move.source, first_track))
        if waiting:
            self._waiting(waiting, "no live worker has room for it" if self._slots() else "no worker is ready")

    def _waiting(self, cameras: list[str], reason: str) -> None:
        """``cameras`` have no worker: quietly while a worker is starting (room may come with
        it), else ``unplaced``, said once per camera with why (and which workers are pending)."""
        if self._workers.in_state(STARTING):
            return
        pending = [f"{worker.id} is pending ({worker.reason})" for worker in self._workers.in_state(PENDING)]
        reason = "; ".join([reason, *pending])
        for camera in cameras:
            if camera not in self._unplaced:
                log.error("camera unplaced: no live worker can hold it", camera=camera, reason=reason)
                self._event(camera, "unplaced", reason=reason)
            self._unplaced[camera] = reason

    async def _start_camera(self, camera: str, worker: str, first_seq: int, moved_from: str | None, first_track: int = 1) -> None:
        if moved_from is not None:
            log.warning("camera moved", camera=camera, worker=worker, moved_from=moved_from, first_seq=first_seq)
        await self._workers.by_id[worker].actor.add.remote(self._cameras[camera], first_seq, moved_from, first_track)

    async def _move(self, camera: str, source: str, target: str) -> None:
        """A rebalancing move between two live workers: stopped on one (its faces in view leave
        with ``reason: "moved"``, its records collected first, so they stay in order), started on
        the other where its ``seq`` and track ids left off."""
        giver = self._workers.by_id[source]
        async with giver.taking:
            next_seq, next_track = await giver.actor.remove.remote(camera, target)
            self._gather(giver, await giver.actor.take_records.remote())
        await self._workers.by_id[target].actor.add.remote(self._cameras[camera], next_seq, source, next_track)

    def _stopped(self, worker: WorkerHandle, result: dict[str, Any]) -> None:
        """A ready worker's last answer: what it wrote and lost, its files, its last records."""
        self._gather(worker, result["records"])
        worker.health.setdefault("output", {}).update(result["output"])
        self._files.update(Path(path) for path in result["files"])

    def _spawn(self, coroutine: Any) -> None:
        """Run a camera start or move in the background; a failure is the worker's (the next
        tick finds it) and is logged, never lost."""
        task = asyncio.create_task(coroutine)
        self._pending.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._pending.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("camera start on a worker failed", error=ray_cluster.failure_reason(finished.exception()))

        task.add_done_callback(done)

    def _event(self, camera: str | None, event: str, **fields: Any) -> None:
        record = records.event(camera=camera, event=event, wallclock=time.time(), **fields)
        for sink in self._sinks:
            sink.submit([record])

    async def _wanted_workers(self) -> int:
        if self.plan.device == GPU:
            gpus = (await asyncio.get_running_loop().run_in_executor(None, ray.cluster_resources)).get(resources.GPU_RESOURCE, 0)
            return int(gpus) * self._cluster.workers_per_gpu
        return self._cluster.cpu_workers

    def _slots(self) -> list[planner.WorkerSlot]:
        return [planner.WorkerSlot(w.id, w.capacity) for w in self._workers.in_state(READY)]

    def _demands(self) -> list[planner.CameraDemand]:
        return list(self._demands_of.values())

    def _price(self, camera: CameraConfig) -> planner.CameraDemand:
        return resources.camera_demand(self.config, self.plan, camera, self._tables)


class _ClusterCollector(Collector):
    """``/metrics`` for the whole cluster: every ready worker's metrics as it last reported
    them, each sample labelled with its ``worker``, and the coordinator's own (its MQTT sink's
    labelled ``worker="coordinator"``)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    def collect(self) -> Iterator[Metric]:
        coordinator = self._coordinator
        workers = list(coordinator._workers)
        families: dict[str, Metric] = {}
        sources = [(w.id, text_string_to_metric_families(w.metrics.decode())) for w in workers]
        sources.append(("coordinator", mqtt_metrics([sink.state() for sink in coordinator._sinks])))
        for worker, metrics in sources:
            for family in metrics:
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": worker}, sample.value, sample.timestamp)
        yield from families.values()
        yield GaugeMetricFamily("dalistream_cluster_workers", "Cluster workers ready.", value=sum(w.state == READY for w in workers))
        yield GaugeMetricFamily("dalistream_cluster_workers_pending", "Cluster workers Ray cannot place (see /health).",
                                value=sum(w.state == PENDING for w in workers))
        yield GaugeMetricFamily("dalistream_cluster_cameras_unplaced", "Cameras no live worker can hold.", value=len(coordinator._unplaced))
