"""dalistream as a client of the baseline's sweep harness (``../shared/baseline/rtsp_sweep.py``),
so it and the plain-OpenCV baseline are measured against the same server, clip and machine in
one run. Runs the service's pipeline on N cameras for ``--warmup`` + ``--duration`` seconds and
prints the JSON summary line the harness reads (same keys as the baseline's ``peer_opencv.py``).
Face tracks and crops are on (the defaults); ``--mqtt`` adds the MQTT sink:

    ../shared/baseline/rtsp_sweep.py --ns 2 3 4 --file media/sample_1080p25.h264 --out rows.jsonl \\
        --client ".venv/bin/python scripts/sweep_client.py --n {n} --base {base} --duration {duration} --warmup {warmup}"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from dalistream.pipeline.runtime import Runtime
from dalistream.tools.bench import HELD_FPS_SHARE
from dalistream.tools.demo import RunUsage, demo_config, epoch, run_measured, window_stats

SOURCE_FPS = 25.0


def lag_growth_ms(lines: list[dict], usage: RunUsage) -> float:
    """Over the window, the most any camera's analysed frames fell behind their stream: arrival
    time elapsed minus presentation time elapsed, first to last frame."""
    start, end = usage.start[0], usage.end[0]
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        if line["type"] == "detections" and start <= (arrived := epoch(line["wallclock"])) < end:
            spans.setdefault(line["camera"], []).append((arrived, line["pts"]))
    growth = [(frames[-1][0] - frames[0][0]) - (frames[-1][1] - frames[0][1]) for frames in spans.values() if len(frames) > 1]
    return round(1e3 * max(growth), 1) if growth else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--base", required=True, help="camera i is at BASE + i")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--calib-dir", default="calib_data", help="model.calib_dir: INT8 calibration frames (JPEG/PNG)")
    parser.add_argument("--mqtt", metavar="URL", help="also publish every record, detections included, to this broker (as bench --mqtt)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        tables = {} if args.mqtt is None else {"mqtt": {"url": args.mqtt, "publish_detections": True}}
        config = demo_config([f"{args.base}{i}" for i in range(args.n)], Path(out), model={"precision": args.precision, "calib_dir": args.calib_dir},
                             tables=tables)
        runtime = Runtime(config)
        usage = RunUsage(None)
        loop_cpu_s = asyncio.run(run_measured(runtime, args.warmup, args.duration, usage, None))
        lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    window = window_stats(lines, usage, config.pipeline.detect_fps)
    decoded = [runtime.report(camera.id).counts.get("frames_decoded", 0) for camera in config.camera]
    total_s = args.warmup + args.duration
    print(json.dumps({
        "n": args.n,
        "shape": runtime.shape.as_dict(),
        "window_s": window["seconds"],
        "cpu_pct": window["cpu_percent"],
        "cpu_pct_per_cam": round(window["cpu_percent"] / args.n, 1),
        "min_analysed_fps": window["analysed_fps_min"],
        "min_grab_pct": round(100 * min(decoded) / (SOURCE_FPS * total_s), 2),  # whole run: decoded of sent
        "lat_p50_ms": window["latency_p50_ms"],
        "lat_p99_ms": window["latency_p99_ms"],
        "max_lag_growth_ms": lag_growth_ms(lines, usage),
        "dropped": window["dropped"],
        "frames_lost": window["frames_lost"],
        # The whole run, warm-up included: the event loop thread's CPU, and each stage's per item.
        "loop_cpu_pct": round(100 * loop_cpu_s / total_s, 1),
        "stages": {name: {key: round(value, 3) for key, value in cost.per_item_ms().items()} for name, cost in runtime.stages.snapshot().items()},
        "pass": window["analysed_fps_min"] >= HELD_FPS_SHARE * window["detect_fps"] and not window["dropped"] and not window["frames_lost"],
    }))


if __name__ == "__main__":
    main()
