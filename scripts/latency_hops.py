"""Where an analysed frame's latency goes: the service's pipeline on N cameras of the baseline's
RTSP server (``../shared/baseline/gst_server.py``, all cameras in lockstep), each analysed frame
timestamped at every hop, and the percentiles of each hop printed:

    .venv/bin/python scripts/latency_hops.py --cameras 6 --clip CLIP.h264 [--precision int8 --calib-dir DIR]

received (its last RTP packet) → decoded (back on the event loop) → queued for a batch → taken by
a detector → on the inference thread → inferred, postprocessed and tracked → written. The hops
are timed by wrapping the runtime's methods in this process only; the service is unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from dalistream.pipeline import runtime as rt
from dalistream.pipeline.batching import Batcher
from dalistream.tools.demo import demo_config

HOPS = ["received", "decoded", "queued", "taken", "inference_thread", "tracked", "written"]
SERVER = Path(__file__).resolve().parents[1].parent / "shared" / "baseline" / "gst_server.py"


class Hops:
    """Per analysed frame (camera, seq), the monotonic time of each hop."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, int], dict[str, float]] = {}
        self._lock = threading.Lock()

    def mark(self, camera: str, seq: int, hop: str, received: float | None = None) -> None:
        with self._lock:
            frame = self.times.setdefault((camera, seq), {})
            if received is not None:
                frame["received"] = received
            frame[hop] = time.monotonic()

    def wrap(self) -> None:
        """Wrap the runtime's hops to mark each frame passing them."""
        push, take, detect, sampled, write = Batcher.push, Batcher.take, rt.Runtime._detect, rt.Runtime._sampled, rt.Runtime._write

        def timed_push(batcher: Batcher, camera: str, frame: Any, now: float) -> Any:
            self.mark(frame.camera, frame.seq, "queued")
            return push(batcher, camera, frame, now)

        def timed_take(batcher: Batcher, busy: set[str]) -> list[Any]:
            frames = take(batcher, busy)
            for frame in frames:
                self.mark(frame.camera, frame.seq, "taken")
            return frames

        def timed_detect(runtime: rt.Runtime, detector: Any, frames: list[Any]) -> Any:
            for frame in frames:
                self.mark(frame.camera, frame.seq, "inference_thread")
            out = detect(runtime, detector, frames)
            for frame in frames:
                self.mark(frame.camera, frame.seq, "tracked")
            return out

        async def timed_sampled(runtime: rt.Runtime, state: Any, decoded: Any) -> None:
            for frame in decoded.frames:
                self.mark(frame.camera, frame.seq, "decoded", received=frame.received)
            await sampled(runtime, state, decoded)

        def timed_write(runtime: rt.Runtime, batch: list[dict[str, Any]]) -> None:
            for record in batch:
                if record["type"] == "detections":
                    self.mark(record["camera"], record["seq"], "written")
            write(runtime, batch)

        Batcher.push, Batcher.take = timed_push, timed_take  # type: ignore[method-assign]
        rt.Runtime._detect, rt.Runtime._sampled, rt.Runtime._write = timed_detect, timed_sampled, timed_write  # type: ignore[method-assign]

    def table(self, after: float) -> list[tuple[str, float, float]]:
        """(hop, p50 ms, p90 ms) of each hop and the total, over frames received after ``after``."""
        frames = [t for t in self.times.values() if all(hop in t for hop in HOPS) and t["received"] >= after]
        if not frames:
            raise SystemExit("no frame was analysed in the window")
        rows = []
        for name, (a, b) in [*((f"{a} → {b}", (a, b)) for a, b in zip(HOPS, HOPS[1:])), ("total", (HOPS[0], HOPS[-1]))]:
            ms = np.array([(t[b] - t[a]) * 1e3 for t in frames])
            rows.append((name, float(np.percentile(ms, 50)), float(np.percentile(ms, 90))))
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--clip", required=True, help="raw H.264 clip the server loops (e.g. make_clip.sh's)")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=18610)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--calib-dir", default="calib_data")
    args = parser.parse_args()

    hops = Hops()
    hops.wrap()
    server = subprocess.Popen(["/usr/bin/python3", str(SERVER), "--streams", str(args.cameras), "--port", str(args.port), "--file", args.clip],
                              stdout=subprocess.PIPE, text=True)
    try:
        for line in server.stdout or []:
            if "serving" in line:
                break
        with tempfile.TemporaryDirectory() as out:
            urls = [f"rtsp://127.0.0.1:{args.port}/cam{i}" for i in range(args.cameras)]
            runtime = rt.Runtime(demo_config(urls, Path(out), model={"precision": args.precision, "calib_dir": args.calib_dir}))

            async def run() -> None:
                stop = asyncio.Event()
                asyncio.get_running_loop().call_later(args.warmup + args.duration, stop.set)
                await runtime.run(stop)

            start = time.monotonic()
            asyncio.run(run())
    finally:
        server.terminate()
    print(f"{args.cameras} cameras, frames received {args.warmup:g} s after the start")
    for name, p50, p90 in hops.table(start + args.warmup):
        print(f"{name:<34} p50 {p50:6.1f} ms   p90 {p90:6.1f} ms")


if __name__ == "__main__":
    main()
