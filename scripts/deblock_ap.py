"""What skipping H.264's loop filter (deblocking) in the decoder costs in accuracy, and saves in CPU.

The faces-dev images become a camera-like clip: each fitted into 1920x1080, shown for
``--frames`` frames while it pans a pixel a frame, with fresh grain on every frame (so P-frames
carry residuals, as a camera's do), encoded as the baseline's clip is (x264, 4 Mb/s, GOP 50, no
B-frames). The clip is decoded twice, normally and with ``skip_loop_filter`` (``nokey``: every
frame but the key frames, whose pictures the later ones are predicted from anyway), every fifth
frame is analysed, and the detections of each analysed frame are scored against its image's
ground truth (WIDER protocol, as ``eval``): the AP per setting of both decodes, and the decoder's
CPU per frame.

    .venv/bin/python scripts/deblock_ap.py [--frames 10] [--precision fp32] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dalistream.config import ModelConfig
from dalistream.decode.images import load_image
from dalistream.decode.pyav import PyAvDecoder
from dalistream.device import CPU_PLAN
from dalistream.engine.detector import Detector
from dalistream.geometry import Letterbox
from dalistream.tools.accuracy import EVAL_SCORE_THRESHOLD
from dalistream.tools.evaluation import Detections, ImageTruth, evaluate, load_ground_truth

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS, EVERY = 1920, 1080, 25, 5


def clip(
    truth: list[ImageTruth], images: Path, frames: int, seed: int = 0, encode: bool = True
) -> tuple[bytes, list[tuple[ImageTruth, float, int, int]]]:
    """The encoded clip (empty without ``encode``) and, per frame, (its image, scale, x offset,
    y offset) in the frame."""
    rng = np.random.default_rng(seed)
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    context.framerate, context.time_base = Fraction(FPS), Fraction(1, FPS)
    context.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "high",
                       "x264-params": "bframes=0:keyint=50:min-keyint=50:scenecut=0:bitrate=4000:vbv-maxrate=4000:vbv-bufsize=4000"}
    encoded, layout = io.BytesIO(), []
    index = 0
    for item in truth:
        picture, letterbox = load_image(images / item.name, (WIDTH - frames, HEIGHT), "rgb24")
        scale = letterbox.scale_x
        for step in range(frames):
            canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            x = (WIDTH - frames - picture.shape[1]) // 2 + step
            y = (HEIGHT - picture.shape[0]) // 2
            canvas[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
            layout.append((item, scale, x, y))
            if not encode:
                continue
            grain = rng.normal(0.0, 4.0, canvas.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(canvas + grain, 0, 255).astype(np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            for packet in context.encode(frame):
                encoded.write(bytes(packet))
            index += 1
    if encode:
        for packet in context.encode(None):
            encoded.write(bytes(packet))
    return encoded.getvalue(), layout


def frames(data: bytes, options: dict[str, str], keep: bool = True) -> tuple[list[av.VideoFrame], float]:
    """Every EVERY-th frame of the clip (none without ``keep``: then nothing is held, as in the
    service, and the CPU per frame is the decoder's alone), and the CPU ms per frame."""
    context = av.CodecContext.create("h264", "r")
    context.thread_count = 1
    context.options = options
    before = resource.getrusage(resource.RUSAGE_SELF)
    kept, count = [], 0
    with av.open(io.BytesIO(data), format="h264") as container:
        for packet in container.demux(video=0):  # the last, empty packet drains the decoder
            for frame in context.decode(packet):
                if keep and count % EVERY == EVERY - 1:
                    kept.append(frame)
                count += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ms = 1000 * ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / count
    return kept, cpu_ms


def score(frames: list[av.VideoFrame], layout: list, detector: Detector) -> dict[str, float]:
    """AP per setting of the analysed frames, each against its image's ground truth."""
    truth, detections = [], {}
    chosen = [layout[k] for k in range(EVERY - 1, len(layout), EVERY)]
    for number, (frame, (item, scale, x, y)) in enumerate(zip(frames, chosen, strict=True)):
        letterbox = Letterbox.fit(frame.width, frame.height, *detector.input_size)
        (found,) = detector([PyAvDecoder.convert(frame, letterbox, detector.pixel_format)], [letterbox])
        boxes = (found.boxes.astype(np.float64) - [x, y, x, y]) / scale  # back to the image's pixels
        name = f"{item.name}#{number}"
        truth.append(ImageTruth(name, item.width, item.height, item.boxes, item.keep))
        detections[name] = Detections(boxes, found.scores)
    return {setting: round(ap, 2) for setting, ap in evaluate(truth, detections).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = ROOT.parent / "shared" / "data" / "faces-dev"
    parser.add_argument("--images", type=Path, default=data / "images")
    parser.add_argument("--gt", type=Path, default=data / "gt.txt")
    parser.add_argument("--frames", type=int, default=10, help="frames each image is shown for")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--calib-dir", default=str(ROOT.parent / "shared" / "data" / "calib"))
    parser.add_argument("--clip", type=Path, help="keep the encoded clip here, and read it from there when it exists")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.gt.is_file():
        print(f"{args.gt} missing: the research data (../shared/data) is not here", file=sys.stderr)
        return 2
    truth = load_ground_truth(args.gt)
    data_bytes, layout = clip(truth, args.images, args.frames, encode=args.clip is None or not args.clip.is_file())
    if args.clip is not None:
        data_bytes = args.clip.read_bytes() if args.clip.is_file() else (args.clip.write_bytes(data_bytes), data_bytes)[1]
    model = ModelConfig(onnx=ROOT / "engines" / "retinaface_mnet025.onnx", precision=args.precision,
                        calib_dir=Path(args.calib_dir), cache_dir=ROOT / "engines" / "cache")
    detector = Detector(model, CPU_PLAN, 1, score_threshold=EVAL_SCORE_THRESHOLD)
    report = {"images": len(truth), "frames": len(layout), "analysed": len(layout) // EVERY,
              "clip_kbit_s": round(8 * len(data_bytes) / (len(layout) / FPS) / 1000)}
    arms = {"deblocked": {}, "skip_loop_filter=nokey": {"skip_loop_filter": "nokey"}}
    costs: dict[str, list[float]] = {label: [] for label in arms}
    for _ in range(3):  # alternated, the median kept: the machine is shared
        for label, options in arms.items():
            costs[label].append(frames(data_bytes, options, keep=False)[1])
    for label, options in arms.items():
        kept, _ = frames(data_bytes, options)
        report[label] = {"decode_cpu_ms_per_frame": round(float(np.median(costs[label])), 3), "ap": score(kept, layout, detector)}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
