"""FP32 against INT8 inference speed on the CPU, both engines in one process, same input.

Calls alternate between the two engines so machine load hits both alike; the medians are
compared. The INT8 model is the one the config's settings select (quantized and cached on
first use from ``model.calib_dir``):

    .venv/bin/python scripts/engine_speed.py --config site.toml [--input 960x544] [--batch 4] [--calls 15]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from dalistream import config as config_module
from dalistream.decode.images import load_image
from dalistream.device import CPU_PLAN
from dalistream.engine.quantize import calibration_images
from dalistream.engine.detector import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="site.toml whose [model] to measure")
    parser.add_argument("--input", default=None, metavar="WxH", help="letterbox input (default: the config's)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per engine")
    args = parser.parse_args()

    model = config_module.load(args.config).model
    if args.input:
        width, height = (int(v) for v in args.input.lower().split("x"))
        model = dataclasses.replace(model, input=(width, height))
    detectors = {p: Detector(dataclasses.replace(model, precision=p), CPU_PLAN, args.batch) for p in ("fp32", "int8")}
    images = calibration_images(model.calib_dir, args.batch)
    frames = [load_image(path, model.input, detectors["fp32"].pixel_format)[0] for path in images]
    batch = detectors["fp32"].tensor(frames)

    times: dict[str, list[float]] = {p: [] for p in detectors}
    for detector in detectors.values():
        detector.infer(batch)  # warm-up
    for _ in range(args.calls):
        for precision, detector in detectors.items():
            start = time.perf_counter()
            detector.infer(batch)
            times[precision].append(time.perf_counter() - start)
    median_ms = {p: round(1e3 * statistics.median(t), 1) for p, t in times.items()}
    print(json.dumps({
        "input": list(model.input),
        "batch": len(frames),
        "intra_op_threads": model.intra_op_threads,
        "median_ms": median_ms,
        "int8_speedup": round(median_ms["fp32"] / median_ms["int8"], 2),
    }))


if __name__ == "__main__":
    main()
