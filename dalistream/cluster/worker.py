"""A cluster worker: the single-process :class:`~dalistream.pipeline.runtime.Runtime`, run inside
a Ray actor on the cameras the coordinator gives it.

The actor is asynchronous: its methods run on the actor's event loop, the same loop the runtime
runs on, so adding or removing a camera is the runtime's own ``add_camera`` / ``remove_camera``.
It writes its own JSON-lines files (``<prefix>-<worker id>-<start>.jsonl``) and, with
``[mqtt]``, publishes its own records (its client id, when set, ends in ``-<worker id>``; the
coordinator owns ``<prefix>/available`` and ``<prefix>/stats``). With ``cluster.gather_output``
it holds its records for the coordinator to take (:class:`~dalistream.sinks.relay.RecordRelay`)
instead, and the coordinator, which writes them, publishes them too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import ray
from prometheus_client import generate_latest

from dalistream import logs
from dalistream.config import CameraConfig, Config
from dalistream.models.arrays import to_host
from dalistream.pipeline.runtime import Runtime
from dalistream.pipeline.status import AnalysedFrame
from dalistream.service.metrics import metrics_registry
from dalistream.sinks import RecordRelay


def worker_config(config: Config, worker: str) -> Config:
    """``config`` as one worker runs it: no cameras yet (the coordinator adds them), its own
    output files and MQTT client id (no MQTT when the coordinator gathers and publishes its
    records), no HTTP server and no cluster of its own."""
    output = dataclasses.replace(config.output, prefix=f"{config.output.prefix}-{worker}")
    mqtt = config.mqtt
    if config.cluster is not None and config.cluster.gather_output:
        mqtt = None
    elif mqtt is not None and mqtt.client_id:
        mqtt = dataclasses.replace(mqtt, client_id=f"{mqtt.client_id}-{worker}")
    return dataclasses.replace(config, camera=(), output=output, http=dataclasses.replace(config.http, listen=""),
                               cluster=None, mqtt=mqtt)


class Worker:
    """The actor class (made remote by the coordinator with its resources)."""

    def __init__(self, worker: str, config: Config) -> None:
        logs.configure(json=config.logging.json, level=config.logging.level)
        self.id = worker
        self._relay = RecordRelay() if config.cluster.gather_output else None
        # Sized to the cores it reserved in Ray, not to the node's (Ray sets no affinity).
        self._runtime = Runtime(worker_config(config, worker), cores=max(1, round(config.cluster.worker_cpus)), writer=self._relay,
                                mqtt_availability=False)
        self._registry = metrics_registry(self._runtime)
        self._stop = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        """Start the runtime (model loaded, writer running); returns :meth:`health`."""
        self._running = asyncio.create_task(self._runtime.run(self._stop), name=f"runtime-{self.id}")
        while not self._runtime.ready:
            if self._running.done():
                self._running.result()  # it failed: say why
            await asyncio.sleep(0.05)
        return await self.health()

    async def add(self, camera: CameraConfig, first_seq: int = 0, moved_from: str | None = None, first_track: int = 1) -> None:
        """Run ``camera``, its ``seq`` from ``first_seq`` and its face tracks from ``first_track``;
        ``moved_from``: the worker that ran it before (a ``moved`` event says so instead of ``added``)."""
        if moved_from is None:
            self._runtime.add_camera(camera, first_seq=first_seq, first_track=first_track)
        else:
            self._runtime.add_camera(camera, first_seq=first_seq, first_track=first_track, event="moved",
                                     **{"from": moved_from, "to": self.id})

    async def remove(self, camera: str, moved_to: str | None = None) -> tuple[int, int]:
        """Stop ``camera`` (its faces in view leave, ``reason: "moved"`` when ``moved_to`` is
        given); returns the ``seq`` its next frame and the id its next face track would have had."""
        fields = {} if moved_to is None else {"moved_to": moved_to}
        final = await self._runtime.remove_camera(camera, **fields)
        return final.next_seq, final.next_track

    async def health(self) -> dict[str, Any]:
        """Who and where this worker is, and each camera's report (without its last frame)."""
        self._check()
        runtime = self._runtime
        return {
            "id": self.id,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "device": runtime.plan.device,
            "ready": runtime.ready,
            "reports": {camera.id: dataclasses.replace(runtime.report(camera.id), latest=None) for camera in runtime.cameras()},
            "output": {"records_written": runtime.records_written, "records_lost": runtime.records_lost,
                       "problem": runtime.output_problem, "failed": runtime.output_failed},
            "files": [str(path) for path in runtime.output_paths],
            "sinks": runtime.sink_states(),
        }

    async def take_records(self) -> list[dict[str, Any]]:
        """The records written since the last call, in order (none without ``gather_output``)."""
        return [] if self._relay is None else self._relay.take()

    async def latest_frame(self, camera: str) -> AnalysedFrame | None:
        """``camera``'s last analysed frame, for the coordinator's snapshots, its image on the host:
        Ray would pickle a CuPy image by copying it to the host anyway, and the coordinator
        would need CuPy and a GPU of its own to unpickle it."""
        frame = await self._runtime.latest_frame(camera)
        return None if frame is None else dataclasses.replace(frame, image=to_host(frame.image))

    async def faces(self, camera: str) -> list[dict[str, Any]]:
        """``camera``'s face tracks, for the coordinator's faces endpoint."""
        return await self._runtime.faces(camera)

    async def metrics(self) -> bytes:
        """This worker's ``/metrics`` text."""
        return generate_latest(self._registry)

    async def stop(self) -> dict[str, Any]:
        """Flush and stop; returns what was written and lost, the files, and the records not
        yet taken."""
        self._stop.set()
        if self._running is not None:
            await self._running
        runtime = self._runtime
        return {"output": {"records_written": runtime.records_written, "records_lost": runtime.records_lost},
                "files": [str(path) for path in runtime.output_paths], "records": await self.take_records()}

    def _check(self) -> None:
        if self._running is not None and self._running.done():
            self._running.result()  # the runtime failed: the coordinator sees the error and moves the cameras
            raise RuntimeError(f"worker {self.id}: its runtime stopped")
