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

from dalistream import config as config_module
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
    **pipeline: Any,
) -> config_module.Config:
    """Cameras ``cam0…`` on ``urls`` (RTSP ones over the matching transport, default TCP), each
    with the ``camera`` keys added (e.g. ``pace`` and ``loop`` for clips); ``model`` keys are
    added to ``[model]``."""
    transports = transports or ["tcp"] * len(urls)
    return config_module.from_mapping(
        {
            "pipeline": {"device": "cpu", **pipeline},
            "model": {"onnx": str(MODEL), **(model or {})},
            "output": {"dir": str(out), "prefix": "demo"},
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
    progress: Progress | None = None,
    store_costs: bool = False,
) -> dict[str, Any]:
    """Analyse the sample clip as ``cameras`` cameras for ``duration_s``; return a report.

    ``source="rtsp"``: the local RTSP server serves it on one mount per camera (over
    ``transport``); ``"file"``: each camera reads the clip itself, looping, at ``pace``.
    ``store_costs``: merge the measured per-stage costs into the capacity plan's cost table
    (the report's ``cost_table`` says where).
    """
    if to_make := missing():
        raise config_module.ConfigError(to_make)
    server_cpu = _children_cpu_s()
    with LocalRtspServer(SAMPLE_CLIP, cameras) if source == "rtsp" else contextlib.nullcontext() as server:
        if server is None:
            config = demo_config([SAMPLE_CLIP.as_uri()] * cameras, out, camera={"pace": pace, "loop": True})
        else:
            config = demo_config([server.url(i) for i in range(cameras)], out, [transport] * cameras)
        runtime = Runtime(config)
        wall, cpu = time.perf_counter(), time.process_time()
        loop_cpu = asyncio.run(run_for(runtime, duration_s, progress))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = _children_cpu_s() - server_cpu
    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    report = summarize(lines, ClipTruth.load(SAMPLE_TRUTH) if SAMPLE_TRUTH.is_file() else None)
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
