"""``/health``, ``/live`` and ``/ready``: the service and each camera at a glance, as JSON."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import structlog

from dalistream.config import CameraConfig, redact_url
from dalistream.pipeline.runtime import CameraReport, Runtime
from dalistream.pipeline.status import BACKING_OFF, CONNECTING, STREAMING, UNPLACED

log = structlog.get_logger(__name__)

OK, DEGRADED, DOWN = "ok", "degraded", "down"


def camera_json(report: CameraReport) -> dict[str, Any]:
    """One camera's health entry: its state, rate, freshness, drops and last error."""
    status = report.status
    return {
        "id": report.config.id,
        "state": status.state,
        "state_age_s": round(status.state_age_s, 1),
        "analysed_fps": round(status.analysed_fps, 2),
        "last_frame_age_s": None if status.last_frame_age_s is None else round(status.last_frame_age_s, 3),
        "analysed": report.counts.get("frames_analysed", 0),
        "dropped": sum(report.dropped.values()),
        "reconnects": report.counts.get("reconnects", 0),
        "last_error": status.last_error,  # reasons are redacted where they are made
        "last_error_at": status.last_error_at,
        "codec": status.codec,
        "transport": status.transport,
        "size": None if status.size is None else list(status.size),
        "idle": status.idle,
        **({} if report.worker is None else {"worker": report.worker}),
    }


def camera_config_json(camera: CameraConfig) -> dict[str, Any]:
    """A camera's configuration as its ``[[camera]]`` table, the URL's password hidden."""
    table = dataclasses.asdict(camera)
    table["url"] = redact_url(camera.url)
    return table


def health(runtime: Runtime, workers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Overall ``ok`` / ``degraded`` / ``down`` and every camera's entry.

    down: the detector is not running, no camera streams (while some are configured), or the
    output writer failed. degraded: some camera is connecting, backing off or unplaced, or
    records are not reaching the output or another sink (the MQTT broker) right now. Cameras
    whose clip ended (``stopped``) degrade nothing. ``workers``: a cluster's workers, listed as given.
    """
    cameras = [camera_json(runtime.report(camera.id)) for camera in runtime.cameras()]
    states = [camera["state"] for camera in cameras]
    problem = runtime.output_problem
    sinks = [{**state.as_dict(), "state": "up" if state.up else "down"} for state in runtime.sink_states()]
    if not runtime.ready or (states and STREAMING not in states) or runtime.output_failed:
        overall = DOWN
    elif {CONNECTING, BACKING_OFF, UNPLACED} & set(states) or problem is not None or not all(s["up"] for s in sinks):
        overall = DEGRADED
    else:
        overall = OK
    return {
        "status": overall,
        "ready": _ready(runtime, states),
        "device": runtime.plan.device,
        "output": {"records_written": runtime.records_written, "records_lost": runtime.records_lost, "problem": problem},
        "sinks": sinks,
        **({} if workers is None else {"workers": workers}),
        "cameras": cameras,
    }


def ready(runtime: Runtime) -> bool:
    """The model is loaded and at least one camera streams (``/ready``)."""
    return _ready(runtime, [runtime.report(camera.id).status.state for camera in runtime.cameras()])


def _ready(runtime: Runtime, states: list[str]) -> bool:
    return runtime.ready and STREAMING in states


async def publish_stats(runtime: Runtime, interval_s: float, workers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
    """Every ``interval_s``: the ``/health`` summary to the broker's stats topic (``[mqtt]``)."""
    while True:
        await asyncio.sleep(interval_s)
        runtime.publish_stats(health(runtime, None if workers is None else workers()))
