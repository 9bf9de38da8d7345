"""The embedded default: the local RTSP server serving the bundled clip to N cameras, analysed.

``demo`` prints what a user wants to see (analysed fps per camera, faces found against the
clip's ground truth); ``bench`` adds the per-stage costs, CPU use and latency percentiles.
With ``source="file"`` the cameras read the clip itself (``file://`` cameras, looping) instead
of the RTSP server: no GStreamer needed, e.g. on a GPU machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dalistream import config as config_module
from dalistream.device import device_memory
from dalistream.tools.assets import MODEL, SAMPLE_CLIP, SAMPLE_TRUTH, missing
from dalistream.tools.groundtruth import ClipTruth, recall
from dalistream.tools.localserver import LocalRtspServer
from dalistream.pipeline import capacity
from dalistream.pipeline.runtime import Runtime
from dalistream.progress import Progress


def demo_config(
    urls: list[str],
    out: Path,
    transports: list[str] | None = None,
    camera: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    **pipeline: Any,
) -> config_module.Config:
    """Cameras ``cam0…`` on ``urls`` (RTSP ones over the matching transport, default TCP), each
    with the ``camera`` keys added (e.g. ``pace`` and ``loop`` for clips); ``model`` keys are
    added to ``[model]``; ``tables``: more tables of the config (e.g. ``{"tracks": {...}}``)."""
    transports = transports or ["tcp"] * len(urls)
    return config_module.from_mapping(
        {
            "pipeline": {"device": "cpu", **pipeline},
            "model": {"onnx": str(MODEL), **(model or {})},
            "output": {"dir": str(out), "prefix": "demo"},
            **(tables or {}),
            "camera": [
                {"id": f"cam{i}", "url": url, **({} if url.startswith("file:") else {"transport": transport}), **(camera or {})}
                for i, (url, transport) in enumerate(zip(urls, transports, strict=True))
            ],
        }
    )


PROGRESS_TICK_S = 0.5  # how often run_for tells its progress line the time run and frames analysed


async def run_for(runtime: Runtime, duration_s: float, progress: Progress | None = None) -> float:
    """Run ``runtime`` for ``duration_s``; returns the CPU seconds the event loop thread used."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.call_later(duration_s, stop.set)
    if progress is not None:
        _tick(loop, runtime, duration_s, progress, loop.time())
    cpu = time.thread_time()
    await runtime.run(stop)
    return time.thread_time() - cpu


def run_local(
    cameras: int,
    duration_s: float,
    out: Path,
    transport: str = "tcp",
    *,
    source: str = "rtsp",
    pace: str = "realtime",
    warmup_s: float = 0.0,
    model: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Progress | None = None,
    store_costs: bool = False,
    mqtt: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Analyse the sample clip as ``cameras`` cameras for ``warmup_s`` + ``duration_s``; return a
    report, its ``window`` measured over the last ``duration_s`` alone.

    ``source="rtsp"``: the local RTSP server serves it on one mount per camera (over
    ``transport``); ``"file"``: each camera reads the clip itself, looping, at ``pace``.
    ``model``, ``pipeline``: keys added to those tables (e.g. ``precision``, ``max_batch``);
    ``tables``: other tables of the config (e.g. ``{"tracks": {"enabled": False}}``).
    ``store_costs``: merge the measured per-stage costs into the capacity plan's cost table (the
    report's ``cost_table`` says where).
    """
    if to_make := missing():
        raise config_module.ConfigError(to_make)
    server_cpu = _children_cpu_s()
    with LocalRtspServer(SAMPLE_CLIP, cameras) if source == "rtsp" else contextlib.nullcontext() as server:
        if server is None:
            config = demo_config([SAMPLE_CLIP.as_uri()] * cameras, out, camera={"pace": pace, "loop": True}, model=model,
                                 tables=tables, **(pipeline or {}))
        else:
            config = demo_config([server.url(i) for i in range(cameras)], out, [transport] * cameras, model=model, tables=tables,
                                 **(pipeline or {}))
        runtime = Runtime(config)
        usage = RunUsage(server)
        wall, cpu = time.perf_counter(), time.process_time()
        loop_cpu = asyncio.run(run_measured(runtime, warmup_s, duration_s, usage, progress))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = _children_cpu_s() - server_cpu
    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    report = summarize(lines, ClipTruth.load(SAMPLE_TRUTH) if SAMPLE_TRUTH.is_file() else None)
    report["window"] = window_stats(lines, usage, config.pipeline.detect_fps)
    report["run"] = {
        "cameras": cameras,
        "source": source if source == "rtsp" else f"file ({pace})",
        "device": str(runtime.plan),
        "duration_s": round(wall, 2),
        "cpu_percent": round(100 * cpu / wall, 1),
        "event_loop_cpu_percent": round(100 * loop_cpu / wall, 1),
        "rtsp_server_cpu_percent": round(100 * server_cpu / wall, 1),
        "records_lost": runtime.records_lost,
        "files": [str(p) for p in runtime.output_paths],
        **{state.name: state.as_dict() for state in runtime.sink_states() if state.name != "files"},
    }
    report["stages"] = {name: {k: round(v, 3) for k, v in cost.per_item_ms().items()}
                        for name, cost in runtime.stages.snapshot().items()}
    report["latency_ms"] = {k: round(v, 1) for k, v in runtime.latencies.percentiles().items()}
    if store_costs:
        clip = capacity.probe_clip(SAMPLE_CLIP)
        costs = capacity.measured_costs(
            runtime.stages.snapshot(), process_cpu_s=cpu, loop_cpu_s=loop_cpu, frame_size=(clip.width, clip.height),
            device=runtime.plan.device, model=config.model, measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        report["cost_table"] = str(capacity.save_measured(costs)) if costs else "not stored: no frame was analysed"
    return report


class RunUsage:
    """Wall time, our CPU and the RTSP server's CPU at the measured window's start and end, and
    on the GPU the device's memory in use at its end and each stage's stream busy time in it."""

    def __init__(self, server: LocalRtspServer | None) -> None:
        self._server = server
        self.start: tuple[float, float, float] | None = None
        self.end: tuple[float, float, float] | None = None
        self.memory: dict[str, int] = {}
        self.busy_ms: tuple[dict[str, float], dict[str, float]] = ({}, {})  # at the start, at the end

    def now(self) -> tuple[float, float, float]:
        return time.time(), time.process_time(), self._server.cpu_s() if self._server is not None else 0.0


async def run_measured(runtime: Runtime, warmup_s: float, duration_s: float, usage: RunUsage, progress: Progress | None) -> float:
    """:func:`run_for` ``warmup_s`` + ``duration_s``, ``usage`` taken at the window's two ends."""
    loop = asyncio.get_running_loop()
    usage.start = usage.now()

    def start() -> None:
        usage.start = usage.now()
        usage.busy_ms = (runtime.stream_busy_ms(), {})

    def end() -> None:
        usage.end = usage.now()
        usage.memory = device_memory(runtime.plan.device)
        usage.busy_ms = (usage.busy_ms[0], runtime.stream_busy_ms())

    loop.call_later(warmup_s, start)
    loop.call_later(warmup_s + duration_s, end)
    return await run_for(runtime, warmup_s + duration_s, progress)


def window_stats(lines: Iterable[Mapping[str, Any]], usage: RunUsage, detect_fps: float) -> dict[str, Any]:
    """The measured window: per camera the frames that arrived in it per second (min, mean over
    cameras), frames dropped or lost in it, their latency percentiles, CPU of ours and the server;
    on the GPU its memory and the share of the window each stage's streams were busy."""
    (start, cpu0, server0), (end, cpu1, server1) = usage.start, usage.end or usage.now()
    seconds = max(end - start, 1e-9)
    analysed: Counter = Counter()
    dropped = lost = 0
    latencies = []
    cameras = set()
    for line in lines:
        if line["camera"] is None:
            continue
        cameras.add(line["camera"])
        if not start <= epoch(line["wallclock"]) < end:
            continue
        if line["type"] == "detections":
            analysed[line["camera"]] += 1
            latencies.append(line["latency_ms"])
        elif line["event"] == "dropped":
            dropped += line["frames"]
        elif line["event"] == "gap":
            lost += line.get("frames_lost", 0)
    fps = [analysed[camera] / seconds for camera in cameras] or [0.0]
    percentiles = np.percentile(latencies, (50, 90, 99)) if latencies else (float("nan"),) * 3
    return {
        "seconds": round(seconds, 2),
        "cameras": len(cameras),
        "detect_fps": detect_fps,
        "analysed_fps_min": round(min(fps), 2),
        "analysed_fps_mean": round(float(np.mean(fps)), 2),
        "dropped": dropped,
        "frames_lost": lost,
        "latency_p50_ms": round(float(percentiles[0]), 1),
        "latency_p90_ms": round(float(percentiles[1]), 1),
        "latency_p99_ms": round(float(percentiles[2]), 1),
        "cpu_percent": round(100 * (cpu1 - cpu0) / seconds, 1),
        "rtsp_server_cpu_percent": round(100 * (server1 - server0) / seconds, 1),
        **usage.memory,
        **{
            f"{stage}_stream_busy_percent": round((busy - usage.busy_ms[0].get(stage, 0.0)) / (10 * seconds), 1)
            for stage, busy in usage.busy_ms[1].items()
        },
    }


def epoch(iso: str) -> float:
    """A record's ISO-8601 ``wallclock`` back to seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _tick(loop: asyncio.AbstractEventLoop, runtime: Runtime, duration_s: float, progress: Progress, started: float) -> None:
    """Tell ``progress`` the seconds run and the frames analysed, then again in a moment (until the loop closes)."""
    progress.update(min(round(loop.time() - started), round(duration_s)), round(duration_s),
                    f"{sum(runtime.analysed().values())} frames analysed")
    loop.call_later(PROGRESS_TICK_S, _tick, loop, runtime, duration_s, progress, started)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarize(lines: Iterable[Mapping[str, Any]], truth: ClipTruth | None) -> dict[str, Any]:
    """Per camera: frames analysed, analysed fps (from pts), events, and recall against ``truth``."""
    detections: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    events: dict[str, Counter] = defaultdict(Counter)
    dropped: Counter = Counter()
    for line in lines:
        if line["camera"] is None:
            continue  # the service's own events (stopped, output_gap)
        if line["type"] == "detections":
            detections[line["camera"]].append(line)
        else:
            events[line["camera"]][line["event"]] += 1
            if line["event"] == "dropped":
                dropped[line["camera"]] += line["frames"]
    cameras = {}
    for camera in sorted(set(detections) | set(events)):
        found = detections[camera]
        span = found[-1]["pts"] - found[0]["pts"] if len(found) > 1 else 0.0
        entry: dict[str, Any] = {
            "analysed": len(found),
            "analysed_fps": round((len(found) - 1) / span, 2) if span else None,
            "faces": sum(len(r["faces"]) for r in found),
            "dropped": dropped[camera],
            "events": dict(events[camera]),
        }
        if truth is not None:
            matched = recall(found, truth)
            entry["recall"] = round(matched.ratio, 4)
            entry["false_positives"] = matched.false_positives
        cameras[camera] = entry
    summary: dict[str, Any] = {"cameras": cameras}
    if truth is not None:
        every = [r for found in detections.values() for r in found]
        total = recall(every, truth)
        summary["recall"] = {"found": total.found, "total": total.total, "ratio": round(total.ratio, 4)}
    return summary
