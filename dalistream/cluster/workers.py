"""The coordinator's workers as Ray actors: asked for, followed while Ray places them and while
their model loads, stopped or killed.

A worker is ``starting`` from the moment it is asked for (Ray places it at once where a node has
its resources, then its model loads), ``pending`` while Ray cannot place it (with the reason in
words, :func:`~dalistream.cluster.resources.unschedulable`; it starts by itself once a node has
room), and ``ready`` once its model is loaded, when the coordinator is told
(``on_ready``). A worker whose model does not load, or that Ray placed but that has not loaded
within :data:`START_TIMEOUT_S`, is dropped with a ``worker_failed`` event saying why; the next is
asked for :data:`RETRY_S` later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ray
import structlog

from dalistream.config import Config
from dalistream.pipeline.runtime import CameraReport

from . import ray_cluster, resources
from .worker import Worker

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 120.0  # a worker Ray placed that has not loaded its model by then is given up
PLACE_GRACE_S = 30.0  # a worker Ray has not placed by then, though a node looks free, is pending all the same
RETRY_S = 30.0  # after a worker failed to start, the next one is asked for this much later
STOP_TIMEOUT_S = 6.0  # a ready worker's flush at stop; then it is killed
PENDING, STARTING, READY = "pending", "starting", "ready"


@dataclass(slots=True)
class WorkerHandle:
    """One worker as the coordinator knows it."""

    id: str
    actor: Any  # ray.actor.ActorHandle
    ask: dict[str, float]  # the Ray resources it holds once placed
    capacity: float  # cores its cameras may use in the placement plan
    created_at: float
    state: str = STARTING
    reason: str | None = None  # why Ray cannot place it (pending)
    unplaceable: str | None = None  # why Ray could not place it at the last reading
    pid: int = 0  # of its process, once Ray placed it
    placed_at: float = 0.0
    started: asyncio.Task[None] | None = None  # waiting for its model to load
    health: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, CameraReport] = field(default_factory=dict)
    metrics: bytes = b""
    taking: asyncio.Lock = field(default_factory=asyncio.Lock)  # one records collection at a time, so they stay in order


class Workers:
    """The workers asked for and not dropped, by id (``w1``, ``w2``, … never reused).
    ``on_ready(worker, health)``: a worker's model is loaded; ``event(**fields)``: a service
    event for the coordinator's output."""

    def __init__(self, config: Config, device: str, *, on_ready: Callable[[WorkerHandle, dict[str, Any]], None],
                 event: Callable[..., None]) -> None:
        if config.cluster is None:
            raise ValueError("workers need a [cluster] table")
        self._config = config
        self._cluster = config.cluster
        self._device = device
        self._on_ready = on_ready
        self._event = event
        self._serial = 0
        self._retry_at = 0.0
        self.by_id: dict[str, WorkerHandle] = {}

    def __iter__(self) -> Iterator[WorkerHandle]:
        return iter(list(self.by_id.values()))

    def in_state(self, state: str) -> list[WorkerHandle]:
        return [worker for worker in self.by_id.values() if worker.state == state]

    def top_up(self, wanted: int, cameras: int) -> None:
        """Ask for workers until ``wanted`` are asked for (not while a failure is recent)."""
        if time.monotonic() < self._retry_at:
            return
        for _ in range(wanted - len(self.by_id)):
            self._ask(cameras)

    def _ask(self, cameras: int) -> None:
        """One more worker actor: Ray places it where a node has its resources, or keeps it
        waiting; it becomes ready once its model is loaded."""
        self._serial += 1
        worker_id = f"w{self._serial}"
        ask = resources.worker_ask(self._cluster, self._device)
        options = {"num_cpus": ask[resources.CPU_RESOURCE]}
        if resources.GPU_RESOURCE in ask:
            options["num_gpus"] = ask[resources.GPU_RESOURCE]
        actor = ray.remote(Worker).options(name=f"dalistream-{worker_id}", max_restarts=0, **options).remote(worker_id, self._config)
        capacity = resources.worker_capacity(self._cluster, self._device, cameras)
        worker = self.by_id[worker_id] = WorkerHandle(worker_id, actor, ask, capacity, created_at=time.monotonic())
        worker.started = asyncio.create_task(self._start(worker), name=f"start-{worker_id}")

    async def _start(self, worker: WorkerHandle) -> None:
        try:
            health = await worker.actor.start.remote()
        except Exception as exc:
            self._failed(worker, ray_cluster.failure_reason(exc))
            return
        worker.state, worker.reason = READY, None
        self._event("worker_started", worker=worker.id, pid=health["pid"], node=health["node"])
        log.info("cluster worker started", worker=worker.id, pid=health["pid"], node=health["node"])
        self._on_ready(worker, health)

    async def follow(self) -> None:
        """Note which workers Ray has placed (they load their model: ``starting``, given up
        after :data:`START_TIMEOUT_S`) and say why Ray cannot place the others (``pending``).
        The nodes are read before the actor table, and a worker is pending only when two
        readings a tick apart agree: Ray takes a worker's resources a moment before its
        process shows, and one reading in that moment must not call a starting worker pending."""
        unready = [worker for worker in self.by_id.values() if worker.state != READY]
        if not unready:
            return
        loop = asyncio.get_running_loop()
        nodes = await loop.run_in_executor(None, ray_cluster.nodes) if any(not worker.pid for worker in unready) else []
        pids = await loop.run_in_executor(None, lambda: [ray_cluster.placed_pid(worker.actor) for worker in unready])
        now = time.monotonic()
        unready = [worker for worker, pid in zip(unready, pids) if self._placed(worker, pid, now)]
        held = {worker.id: worker.ask for worker in self.by_id.values() if worker.pid or worker.state == READY}
        for worker in unready:
            reason = resources.unschedulable(worker.id, worker.ask, nodes, held)
            if reason is None and now - worker.created_at > PLACE_GRACE_S:
                reason = f"Ray has not placed {worker.id} in {PLACE_GRACE_S:.0f} s although a node has its resources free (see `ray status`)"
            worker.unplaceable, seen = reason, worker.unplaceable
            if reason is None or seen is not None:
                self._pend(worker, reason)

    def _placed(self, worker: WorkerHandle, pid: int, now: float) -> bool:
        """Take note of Ray's reading of ``worker`` (``pid`` 0: not placed); True while it
        still waits for Ray."""
        if worker.state == READY or worker.id not in self.by_id:  # it changed while Ray answered
            return False
        if pid and not worker.pid:
            worker.pid, worker.placed_at = pid, now
            if worker.state == PENDING:
                log.info("cluster worker placed by Ray; loading", worker=worker.id, pid=pid)
            worker.state, worker.reason = STARTING, None
        elif pid and now - worker.placed_at > START_TIMEOUT_S:
            self._failed(worker, f"its model did not load within {START_TIMEOUT_S:.0f} s of Ray placing it")
        return not pid

    def _pend(self, worker: WorkerHandle, reason: str | None) -> None:
        """``worker`` is pending for ``reason`` (said once, when it starts waiting), or, with
        None, may be placed any moment."""
        was = worker.state
        worker.state, worker.reason = (STARTING, None) if reason is None else (PENDING, reason)
        if reason is not None and was != PENDING:
            log.warning("cluster worker pending: Ray cannot place it", worker=worker.id, reason=reason)
            self._event("worker_pending", worker=worker.id, reason=reason)

    def _failed(self, worker: WorkerHandle, reason: str) -> None:
        log.error("cluster worker failed to start", worker=worker.id, reason=reason)
        self._event("worker_failed", worker=worker.id, reason=reason)
        self.drop(worker)
        self._retry_at = time.monotonic() + RETRY_S

    def drop(self, worker: WorkerHandle) -> None:
        """Forget ``worker`` and kill its actor (if it still has one)."""
        del self.by_id[worker.id]
        if worker.started is not None and worker.started is not asyncio.current_task():
            worker.started.cancel()
        self._kill(worker)

    async def stop(self, finished: Callable[[WorkerHandle, dict[str, Any]], None]) -> None:
        """Stop at once: workers that are not ready are killed (nothing of theirs to flush),
        ready ones flush, at most :data:`STOP_TIMEOUT_S` (``finished`` gets each one's
        :meth:`Worker.stop` answer, read while its records lock is held), else are killed."""
        workers = list(self.by_id.values())
        for worker in workers:
            if worker.state != READY:
                if worker.started is not None:
                    worker.started.cancel()
                self._kill(worker)
        await asyncio.gather(*(self._stop(worker, finished) for worker in workers if worker.state == READY))

    async def _stop(self, worker: WorkerHandle, finished: Callable[[WorkerHandle, dict[str, Any]], None]) -> None:
        try:
            async with worker.taking:
                finished(worker, await asyncio.wait_for(worker.actor.stop.remote(), STOP_TIMEOUT_S))
        except Exception as exc:
            log.error("cluster worker did not stop cleanly; killed", worker=worker.id, reason=ray_cluster.failure_reason(exc))
            self._kill(worker)

    @staticmethod
    def _kill(worker: WorkerHandle) -> None:
        try:
            ray.kill(worker.actor, no_restart=True)
        except Exception as exc:  # already gone with its node: nothing left to kill
            log.debug("killing a worker failed", worker=worker.id, error=str(exc))
