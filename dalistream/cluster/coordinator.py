"""The cluster's coordinator: the driver of ``python -m dalistream --config site.toml`` with a
``[cluster]`` table.

It starts one :class:`~dalistream.cluster.worker.Worker` actor per worker on Ray, places the
cameras by capacity (:mod:`dalistream.cluster.planner`, costs from the capacity plan), and every
second asks each worker for its health. A worker that died (its actor, its process, its node) or
whose health does not answer within ``cluster.health_timeout_s`` is dropped: its cameras go to
the survivors with room, each with a ``moved`` event and its ``seq`` continued; cameras no survivor
can hold are ``unplaced`` (an event, and their state in ``/health``) until a worker has room.
Lost workers are started again when Ray has the resources (a node that came back); running
cameras move onto them only when ``cluster.rebalance_s`` allows.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from dalistream.sinks import output_writer

from . import planner
from .worker import Worker

log = structlog.get_logger(__name__)

TICK_S = 1.0  # how often every worker is asked for its health
START_TIMEOUT_S = 120.0  # a worker that has not loaded its model by then is taken for lost
SEQ_SLACK_S = 3.0  # after a worker died: frames it may have analysed beyond its last report (its queues hold ~2 s)
OUTPUT_CLOSE_S = 5.0


@dataclass(slots=True)
class _Worker:
    id: str
    actor: Any  # ray.actor.ActorHandle
    capacity: float
    health: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, CameraReport] = field(default_factory=dict)
    metrics: bytes = b""
    seen_at: float = 0.0


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
        self._workers: dict[str, _Worker] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._serial = 0
        self._seq: dict[str, tuple[int, float]] = {}  # camera → (next seq, clock time of that report)
        self._next_track: dict[str, int] = {}  # camera → the id of its next face track, as last reported
        self._unplaced: set[str] = set()
        self._files: set[Path] = set()  # the workers' output files
        self._last_change = time.monotonic()
        self._pending: set[asyncio.Task[Any]] = set()  # camera adds in flight
        self._writer = output_writer(config.output, f"{config.output.prefix}-coordinator")
        self.registry = CollectorRegistry()
        self.registry.register(_ClusterCollector(self))
        ProcessCollector(namespace="dalistream_coordinator", registry=self.registry)
        self.ready = False

    # What the HTTP layer and CameraControl read, as from a Runtime.

    @property
    def records_written(self) -> int:
        return self._writer.written + sum(w.health.get("output", {}).get("records_written", 0) for w in self._workers.values())

    @property
    def records_lost(self) -> int:
        return self._writer.lost + sum(w.health.get("output", {}).get("records_lost", 0) for w in self._workers.values())

    @property
    def output_problem(self) -> str | None:
        problems = [f"{w.id}: {w.health['output']['problem']}" for w in self._workers.values() if w.health.get("output", {}).get("problem")]
        if self._writer.problem is not None:
            problems.insert(0, f"coordinator: {self._writer.problem}")
        return "; ".join(problems) or None

    @property
    def output_failed(self) -> bool:
        return self._writer.error is not None or any(w.health.get("output", {}).get("failed") for w in self._workers.values())

    @property
    def output_recovered(self) -> bool:
        return self._writer.recovered

    @property
    def output_paths(self) -> list[Path]:
        """The coordinator's files and every worker's (lost ones' included)."""
        return [*self._writer.paths, *sorted(self._files)]

    def cameras(self) -> list[CameraConfig]:
        return list(self._cameras.values())

    def analysed(self) -> dict[str, int]:
        return {camera: self.report(camera).counts.get("frames_analysed", 0) for camera in self._cameras}

    def internal_errors(self) -> dict[str, int]:
        return {camera: self.report(camera).counts.get("internal_errors", 0) for camera in self._cameras}

    def report(self, camera: str) -> CameraReport:
        """The camera's last report from its worker; ``connecting`` until there is one,
        ``unplaced`` while no worker holds it. KeyError when it is not in the cluster."""
        config = self._cameras[camera]
        worker = self._placement.assignment.get(camera)
        if worker is not None and worker in self._workers and camera in self._workers[worker].reports:
            return dataclasses.replace(self._workers[worker].reports[camera], worker=worker)
        status = CameraStatus().view()
        if camera in self._unplaced:
            status = dataclasses.replace(status, state=UNPLACED, last_error="no live worker has room for it")
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
        worker = self._workers.get(self._placement.assignment.get(camera, ""))
        return None if worker is None else await worker.actor.latest_frame.remote(camera)

    def workers(self) -> list[dict[str, Any]]:
        """``/health``'s ``workers`` list."""
        return [
            {"id": w.id, "node": w.health.get("node"), "pid": w.health.get("pid"), "device": w.health.get("device"),
             "cameras": list(self._placement.cameras_of(w.id)), "state": "ready" if w.health.get("ready") else "starting",
             "capacity_cores": round(w.capacity, 3), "load_cores": round(self._placement.load(w.id), 3)}
            for w in self._workers.values()
        ]

    def admission(self, running: list[CameraConfig], candidate: CameraConfig) -> str | None:
        """Why no live worker can hold ``candidate`` (None when one can)."""
        return planner.add(self._placement, self._slots(), self._price(candidate))[1]

    def add_camera(self, camera: CameraConfig, **_: Any) -> None:
        """Place ``camera`` on the live worker with the most room and start it there (or keep
        it ``unplaced`` until one has room). Raises :class:`CameraExists` for an id in use."""
        if camera.id in self._cameras:
            raise CameraExists(f"camera {camera.id!r} is already in the cluster")
        self._cameras[camera.id] = camera
        demand = self._demands_of[camera.id] = self._price(camera)
        placement, reason = planner.add(self._placement, self._slots(), demand)
        if reason is not None:
            self._unplace(camera.id, reason)
            return
        self._placement = placement
        self._spawn(self._start_camera(camera.id, placement.assignment[camera.id], 0, None))

    async def remove_camera(self, camera: str, **fields: Any) -> CameraReport:
        """Stop ``camera`` wherever it runs; returns its last report."""
        final = self.report(camera)
        worker = self._placement.assignment.get(camera)
        del self._cameras[camera], self._demands_of[camera]
        self._placement = planner.remove(self._placement, camera)
        self._unplaced.discard(camera)
        self._seq.pop(camera, None)
        self._next_track.pop(camera, None)
        if worker is not None and worker in self._workers:
            await self._workers[worker].actor.remove.remote(camera)
        return final

    # Running the cluster.

    def connect(self) -> None:
        """Join the Ray cluster (or start a local one). Call it from the main thread before the
        service installs its signal handlers: Ray installs its own, which must not stay."""
        address = self._cluster.address or None
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        log.info("ray cluster", address=address or "local", resources=ray.cluster_resources())

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._writer.start()
        try:
            await asyncio.gather(*(self._start_worker() for _ in range(self._wanted_workers())))
            if not self._workers:
                raise RuntimeError("no cluster worker could be started (see the log)")
            self._apply(*planner.place(self._placement, self._slots(), self._demands()), lost={})
            self.ready = True
            while not stop.is_set():
                await self._tick()
                try:
                    await asyncio.wait_for(stop.wait(), TICK_S)
                except TimeoutError:
                    pass
        finally:
            self.ready = False
            for task in (*self._starting, *self._pending):
                task.cancel()
            stopped = await asyncio.gather(*(w.actor.stop.remote() for w in self._workers.values()), return_exceptions=True)
            for worker, result in zip(list(self._workers.values()), stopped):
                if isinstance(result, dict):
                    worker.health.setdefault("output", {}).update(result["output"])
                    self._files.update(Path(path) for path in result["files"])
            self._event(None, "stopped", analysed=self.analysed())
            await loop.run_in_executor(None, self._writer.close, OUTPUT_CLOSE_S)
            await loop.run_in_executor(None, ray.shutdown)

    async def _tick(self) -> None:
        """Ask every worker for its health; move the cameras of those that do not answer;
        start lost workers again where Ray has room; place what waits; rebalance when allowed."""
        workers = list(self._workers.values())
        answers = await asyncio.gather(*(self._ask(worker) for worker in workers), return_exceptions=True)
        lost = {}
        for worker, answer in zip(workers, answers):
            if isinstance(answer, BaseException):
                lost[worker.id] = worker
                self._lose(worker, answer)
        if lost:
            self._apply(*planner.place(self._placement, self._slots(), self._demands()), lost=lost)
        elif self._unplaced:
            self._apply(*planner.place(self._placement, self._slots(), self._demands()), lost={})
        missing = self._wanted_workers() - len(self._workers) - len(self._starting)
        loop = asyncio.get_running_loop()
        if missing > 0 and (await loop.run_in_executor(None, ray.available_resources)).get(self._resource(), 0.0) >= self._worker_share():
            task = asyncio.create_task(self._start_worker())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        placement, moves = planner.rebalance(self._placement, self._slots(), now=time.monotonic(),
                                             last_change_at=self._last_change, rebalance_s=self._cluster.rebalance_s)
        if moves:
            self._placement = placement
            self._last_change = time.monotonic()
            for move in moves:
                self._spawn(self._move(move.camera, move.source, move.target))

    async def _ask(self, worker: _Worker) -> None:
        health, metrics = await asyncio.wait_for(
            asyncio.gather(worker.actor.health.remote(), worker.actor.metrics.remote()), self._cluster.health_timeout_s
        )
        now = time.monotonic()
        worker.health, worker.metrics, worker.seen_at = health, metrics, now
        worker.reports = health["reports"]
        self._files.update(Path(path) for path in health["files"])
        for camera, report in worker.reports.items():
            self._seq[camera] = (report.next_seq, now)
            self._next_track[camera] = report.next_track

    def _lose(self, worker: _Worker, error: BaseException) -> None:
        reason = "its health did not answer" if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
        log.error("cluster worker lost; its cameras move", worker=worker.id, pid=worker.health.get("pid"),
                  cameras=list(self._placement.cameras_of(worker.id)), reason=reason[:300])
        self._event(None, "worker_lost", worker=worker.id, pid=worker.health.get("pid"), reason=reason[:300],
                    cameras=list(self._placement.cameras_of(worker.id)))
        del self._workers[worker.id]
        self._last_change = time.monotonic()
        try:
            ray.kill(worker.actor, no_restart=True)
        except Exception as exc:  # already gone with its node: nothing left to kill
            log.debug("killing a lost worker failed", worker=worker.id, error=str(exc))

    def _apply(self, placement: planner.Placement, moves: list[planner.Move], *, lost: dict[str, _Worker]) -> None:
        """Carry out :func:`planner.place`'s moves: start each placed camera on its worker (its
        ``seq`` continued past what a lost worker may have written), report the unplaced."""
        self._placement = placement
        for move in moves:
            if move.target is None:
                self._unplace(move.camera, "no live worker has room for it")
                continue
            self._unplaced.discard(move.camera)
            first_seq, first_track = 0, 1
            if move.camera in self._seq:
                next_seq, reported_at = self._seq[move.camera]
                behind = time.monotonic() - reported_at + (SEQ_SLACK_S if move.source in lost else 0.0)
                frames = math.ceil(self.config.pipeline.detect_fps * behind)
                first_seq = next_seq + frames
                # Each frame since the last report may have started up to max_per_camera tracks.
                first_track = self._next_track.get(move.camera, 1) + frames * self.config.tracks.max_per_camera
            self._spawn(self._start_camera(move.camera, move.target, first_seq, move.source, first_track))

    async def _start_camera(self, camera: str, worker: str, first_seq: int, moved_from: str | None, first_track: int = 1) -> None:
        if moved_from is not None:
            log.warning("camera moved", camera=camera, worker=worker, moved_from=moved_from, first_seq=first_seq)
        await self._workers[worker].actor.add.remote(self._cameras[camera], first_seq, moved_from, first_track)

    async def _move(self, camera: str, source: str, target: str) -> None:
        """A rebalancing move between two live workers: stopped on one (its faces in view leave
        with ``reason: "moved"``), started on the other where its ``seq`` and track ids left off."""
        next_seq, next_track = await self._workers[source].actor.remove.remote(camera, target)
        await self._workers[target].actor.add.remote(self._cameras[camera], next_seq, source, next_track)

    async def _start_worker(self) -> None:
        self._serial += 1
        worker_id = f"w{self._serial}"
        options = {"num_gpus": 1 / self._cluster.workers_per_gpu} if self.plan.device == GPU else {"num_cpus": self._cluster.worker_cpus}
        actor = ray.remote(Worker).options(name=f"dalistream-{worker_id}", max_restarts=0, **options).remote(worker_id, self.config)
        try:
            health = await asyncio.wait_for(actor.start.remote(), START_TIMEOUT_S)
        except Exception as exc:
            log.error("cluster worker failed to start", worker=worker_id, error=f"{type(exc).__name__}: {exc}"[:300])
            ray.kill(actor, no_restart=True)
            return
        capacity_cores = capacity.FITS_SHARE * (self._cluster.worker_cpus if self.plan.device != GPU else len(self._cameras) or 1)
        self._workers[worker_id] = _Worker(worker_id, actor, capacity_cores, health, health["reports"], seen_at=time.monotonic())
        self._last_change = time.monotonic()
        self._event(None, "worker_started", worker=worker_id, pid=health["pid"], node=health["node"])
        log.info("cluster worker started", worker=worker_id, pid=health["pid"], node=health["node"])

    def _spawn(self, coroutine: Any) -> None:
        """Run a camera start or move in the background; a failure is the worker's (the next
        tick finds it) and is logged, never lost."""
        task = asyncio.create_task(coroutine)
        self._pending.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._pending.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("camera start on a worker failed", error=repr(finished.exception())[:300])

        task.add_done_callback(done)

    def _unplace(self, camera: str, reason: str) -> None:
        if camera not in self._unplaced:
            self._unplaced.add(camera)
            log.error("camera unplaced: no live worker can hold it", camera=camera, reason=reason)
            self._event(camera, "unplaced", reason=reason)

    def _event(self, camera: str | None, event: str, **fields: Any) -> None:
        self._writer.submit([records.event(camera=camera, event=event, wallclock=time.time(), **fields)])

    def _wanted_workers(self) -> int:
        if self.plan.device == GPU:
            return int(ray.cluster_resources().get("GPU", 0)) * self._cluster.workers_per_gpu
        return self._cluster.cpu_workers

    def _resource(self) -> str:
        return "GPU" if self.plan.device == GPU else "CPU"

    def _worker_share(self) -> float:
        return 1 / self._cluster.workers_per_gpu if self.plan.device == GPU else self._cluster.worker_cpus

    def _slots(self) -> list[planner.WorkerSlot]:
        return [planner.WorkerSlot(w.id, w.capacity) for w in self._workers.values()]

    def _demands(self) -> list[planner.CameraDemand]:
        return list(self._demands_of.values())

    def _price(self, camera: CameraConfig) -> planner.CameraDemand:
        """A camera's cost in cores by the capacity plan (1 per camera where there is no cost
        model, e.g. on the GPU: then workers are balanced by camera count)."""
        plan = capacity.plan_for(dataclasses.replace(self.config, camera=(camera,)), self.plan, tables=self._tables)
        return planner.CameraDemand(camera.id, plan.cores(plan.cameras[0]) if plan.costs is not None else 1.0)


class _ClusterCollector(Collector):
    """``/metrics`` for the whole cluster: every worker's metrics as it last reported them, each
    sample labelled with its ``worker``, and the coordinator's own."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    def collect(self) -> Iterator[Metric]:
        coordinator = self._coordinator
        families: dict[str, Metric] = {}
        for worker in list(coordinator._workers.values()):
            for family in text_string_to_metric_families(worker.metrics.decode()):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": worker.id}, sample.value, sample.timestamp)
        yield from families.values()
        yield GaugeMetricFamily("dalistream_cluster_workers", "Cluster workers live.", value=len(coordinator._workers))
        yield GaugeMetricFamily("dalistream_cluster_cameras_unplaced", "Cameras no live worker can hold.", value=len(coordinator._unplaced))
