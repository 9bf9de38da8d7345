"""Soak: N cameras on the local RTSP server, the server killed and restarted every K seconds,
for M minutes. Reports memory, file descriptors and threads over time, how long each camera
took to analyse again after each restart, and what was lost:

    .venv/bin/python scripts/soak.py --cameras 8 --minutes 30 --restart-every 60 [--json]

The service runs in this process (the real runtime, RTSP ingest and model), the server in a
child process (its restarts are real: a new process on the same port). RSS growth compares the
median of the last ``--window`` minutes with that of the ``--window`` minutes after ``--settle``
(start-up allocations do not count; queues that fill and empty under load make single samples
swing by tens of MiB, medians do not).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dalistream import logs
from dalistream.pipeline.runtime import Runtime
from dalistream.tools.demo import SAMPLE_CLIP, demo_config
from dalistream.tools.localserver import LocalRtspServer

DOWN_S = 2.0  # how long the server stays dead at each restart
SAMPLE_S = 10.0  # process sample interval
RECONNECT = {"no_data_timeout_s": 2.0, "backoff_first_s": 0.2, "backoff_cap_s": 2.0, "timeout_s": 2.0}


def process_sample() -> dict[str, float]:
    """RSS (MiB), open file descriptors and threads of this process, now."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {
        "t_s": time.monotonic(),
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": int(status["Threads"]),
    }


async def soak(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    server = LocalRtspServer(SAMPLE_CLIP, args.cameras, port=args.port).start()
    config = demo_config([server.url(i) for i in range(args.cameras)], out, camera=RECONNECT)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, input=tuple(args.input)))
    runtime = Runtime(config)
    restarts: list[float] = []
    samples: list[dict[str, float]] = []
    stop = asyncio.Event()
    started = time.monotonic()

    async def restart_server() -> None:
        while True:
            await asyncio.sleep(args.restart_every - DOWN_S)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(server.start)  # a new process, on the same port
            restarts.append(time.time())

    async def sample() -> None:
        while True:
            samples.append(process_sample())
            await asyncio.sleep(SAMPLE_S)

    helpers = [asyncio.create_task(restart_server()), asyncio.create_task(sample())]
    asyncio.get_running_loop().call_later(args.minutes * 60, stop.set)
    try:
        await runtime.run(stop)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        server.stop()
    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    return report(args, lines, restarts, samples, started, runtime)


def report(args: argparse.Namespace, lines: list[dict[str, Any]], restarts: list[float],
           samples: list[dict[str, float]], started: float, runtime: Runtime) -> dict[str, Any]:
    def at(line: dict[str, Any]) -> float:
        return datetime.fromisoformat(line["wallclock"].replace("Z", "+00:00")).timestamp()

    cameras = sorted({line["camera"] for line in lines if line["type"] == "detections"})
    detections = {c: sorted(at(line) for line in lines if line["type"] == "detections" and line["camera"] == c) for c in cameras}
    gaps: list[float] = []  # per restart and camera: restart → first analysed frame after it
    missed = 0
    for restart in restarts:
        for camera in cameras:
            after = [t for t in detections[camera] if t > restart]
            if after:
                gaps.append(after[0] - restart)
            else:
                missed += 1
    settled = [s["rss_mib"] for s in samples if s["t_s"] - started >= args.settle * 60]
    first = [s["rss_mib"] for s in samples if 0 <= s["t_s"] - started - args.settle * 60 < args.window * 60]
    last = [s["rss_mib"] for s in samples if s["t_s"] - started >= (args.minutes - args.window) * 60]
    dropped = sum(line.get("frames", 0) for line in lines if line.get("event") == "dropped")
    return {
        "cameras": args.cameras,
        "minutes": args.minutes,
        "restart_every_s": args.restart_every,
        "input": args.input,
        "restarts": len(restarts),
        "analysed": {c: len(detections[c]) for c in cameras},
        "frames_dropped": dropped,
        "records_written": runtime.records_written,
        "records_lost": runtime.records_lost,
        "internal_errors": sum(runtime.internal_errors().values()),
        "gap_after_restart_s": {
            "median": round(statistics.median(gaps), 2) if gaps else None,
            "max": round(max(gaps), 2) if gaps else None,
            "cameras_never_back": missed,
        },
        "rss_mib": {
            "start": round(samples[0]["rss_mib"], 1),
            "settled_min": round(min(settled), 1),
            "settled_max": round(max(settled), 1),
            f"median_{args.settle:g}_to_{args.settle + args.window:g}_min": round(statistics.median(first), 1),
            f"median_last_{args.window:g}_min": round(statistics.median(last), 1),
            "growth_percent": round(100 * (statistics.median(last) / statistics.median(first) - 1), 2),
        },
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples)} if samples else None,
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples),
                    "python_end": threading.active_count()} if samples else None,
        "samples": [{k: round(v - started, 1) if k == "t_s" else round(v, 1) for k, v in s.items()} for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--restart-every", type=float, default=60.0, metavar="S", help="seconds between server restarts")
    parser.add_argument("--settle", type=float, default=5.0, metavar="MIN", help="RSS growth is measured from this minute on")
    parser.add_argument("--window", type=float, default=5.0, metavar="MIN", help="minutes of samples whose medians are compared")
    parser.add_argument("--input", type=int, nargs=2, default=(640, 384), metavar=("W", "H"), help="model input")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one, kept across restarts)")
    parser.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    args = parser.parse_args()
    logs.configure(level="warning")  # events and warnings on stderr; stdout holds the report alone
    if args.restart_every <= DOWN_S:
        parser.error(f"--restart-every must exceed the {DOWN_S:g} s the server stays down")
    if args.minutes < args.settle + 2 * args.window:
        parser.error("--minutes must cover --settle and two --window spans")
    with tempfile.TemporaryDirectory(prefix="soak-") as out:
        result = asyncio.run(soak(args, Path(out)))
    if not args.json:
        result = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
