"""CPU cost per frame of each analysis stage, measured one stage at a time on the sample clip.

In the running pipeline the stages overlap on threads, and DALI and ONNX Runtime work on their
own thread pools, so a per-thread clock cannot see their whole cost. Here every stage runs alone
and is timed with the process-wide CPU clock (all threads) and the wall clock:

    .venv/bin/python scripts/stage_costs.py [--frames 200] [--batch 1] [--threads 1] [--json]

The defaults are the service's CPU shape (single frames, one intra-op thread per detector).

Receiving and depacketizing run on the event loop thread only and are measured in place by
``python -m dalistream bench``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from dalistream import records
from dalistream.config import ModelConfig
from dalistream.decode import PyAvDecoder
from dalistream.device import CPU_PLAN
from dalistream.geometry import Letterbox
from dalistream.engine.detector import Detector
from dalistream.sinks import JsonlWriter
from dalistream.tools.demo import MODEL, SAMPLE_CLIP


def timed(items: int, work: Callable[[], object]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"items": items, "wall_ms": round(1e3 * wall / items, 3), "cpu_ms": round(1e3 * cpu / items, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames of the clip to decode")
    parser.add_argument("--batch", type=int, default=1, help="inference batch size")
    parser.add_argument("--input", type=int, nargs=2, default=(960, 544), metavar=("W", "H"))
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0 = all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = args.input

    with av.open(str(SAMPLE_CLIP), format="h264") as container:
        units = [bytes(p) for p in container.demux() if p.size][: args.frames]
    decoder = PyAvDecoder("H264")
    frames: list[av.VideoFrame] = []
    costs = {"decode": timed(len(units), lambda: [frames.extend(decoder.decode(u, i)) for i, u in enumerate(units)])}

    letterbox = Letterbox.fit(frames[0].width, frames[0].height, width, height)
    sampled = frames[::5]
    images: list[np.ndarray] = []
    costs["convert"] = timed(len(sampled), lambda: images.extend(PyAvDecoder.convert(f, letterbox) for f in sampled))

    batches = [images[i : i + args.batch] for i in range(0, len(images) - args.batch + 1, args.batch)]
    count = len(batches) * args.batch
    model = ModelConfig(onnx=MODEL, input=(width, height), intra_op_threads=args.threads)
    detector = Detector(model, CPU_PLAN, args.batch)
    detector.warm_up()
    costs["dali_graph"] = timed(count, lambda: [detector.tensor(b, copy=False) for b in batches])
    tensors = [detector.tensor(b) for b in batches]
    outputs = []
    costs["inference"] = timed(count, lambda: [outputs.append(detector.infer(t)) for t in tensors])
    found = []
    costs["postprocess"] = timed(count, lambda: [found.extend(detector.decode(o, [letterbox] * args.batch)) for o in outputs])
    with tempfile.TemporaryDirectory() as out:
        writer = JsonlWriter(Path(out), "cost", rotate_bytes=1 << 30)

        def write() -> None:
            for seq, faces in enumerate(found):
                writer.write([records.detections(camera="cam0", seq=seq, pts=seq / 5, wallclock=time.time(),
                                                 width=1920, height=1080, latency_ms=1.0, faces=faces)])
            writer.close()

        costs["record+write"] = timed(len(found), write)

    report = {"frames": len(units), "batch": args.batch, "input": [width, height], "stages": costs,
              "faces_per_frame": round(sum(len(f.scores) for f in found) / len(found), 2)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{len(units)} frames of {SAMPLE_CLIP.name}, batch {args.batch}, input {width}x{height}")
    print(f"{'stage':<14}{'per':>8}{'wall ms':>10}{'cpu ms':>10}")
    for name, cost in costs.items():
        per = "frame" if name == "decode" else "analysed"
        print(f"{name:<14}{per:>8}{cost['wall_ms']:>10.2f}{cost['cpu_ms']:>10.2f}")


if __name__ == "__main__":
    main()
