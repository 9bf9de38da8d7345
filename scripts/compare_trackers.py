"""Replay the tracks clip's detections through a face tracker and score it as
``dalistream.tools.tracking`` scores ours: how the README's tracker table was made.

The detections come from ``python -m dalistream.tools.tracking --detect-fps N --save
records.jsonl`` (the service's own records of the clip; their ``track`` fields are replaced).
Candidates other than ours run from a virtual environment of their own, as their dependencies
do not fit ours (roboflow ``trackers`` brings opencv-python and supervision; ``norfair`` pins
numpy < 2), with py-motmetrics and this checkout on the path::

    python -m venv /tmp/trackers-venv && /tmp/trackers-venv/bin/pip install trackers motmetrics
    PYTHONPATH=. /tmp/trackers-venv/bin/python scripts/compare_trackers.py --records records.jsonl \\
        --tracker bytetrack [--iou GIoU --min-iou -0.5]
    .venv/bin/python scripts/compare_trackers.py --records records.jsonl --tracker ours

Each tracker gets the frames' pts as their time; the library trackers are kept at their
defaults except ``minimum_consecutive_frames = 1`` (a face is tracked from its first frame, as
ours) and a lost-track buffer of one second, ours' ``max_missed_s``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dalistream.tools.assets import tracks_clip
from dalistream.tools.tracking import TrackTruth, evaluate

Step = Callable[[float, np.ndarray, np.ndarray], list[int | None]]  # (time, boxes, scores) -> a track per box


def ours() -> Step:
    from dalistream.tracks.tracker import UNTRACKED, Tracker

    tracker = Tracker(max_missed_s=1.0)
    return lambda t, boxes, scores: [None if track == UNTRACKED else track
                                     for track in tracker.update(t, boxes, scores, (1920, 1080)).tracks.tolist()]


def roboflow(kind: str, fps: float, iou: str | None, min_iou: float | None) -> Step:
    import supervision
    import trackers

    options: dict = {"lost_track_buffer": 30, "frame_rate": fps}  # 30 frames at 30 fps: one second
    if kind != "ocsort":
        options["minimum_consecutive_frames"] = 1
    if iou is not None:
        options["iou"] = getattr(trackers, iou)()
    if min_iou is not None:
        options["minimum_iou_threshold"] = min_iou
    tracker = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker, "ocsort": trackers.OCSORTTracker}[kind](**options)

    def step(t: float, boxes: np.ndarray, scores: np.ndarray) -> list[int | None]:
        found = supervision.Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(scores), int))
        out = tracker.update(found, timestamp=t)
        ids: list[int | None] = [None] * len(scores)
        for box, track in zip(out.xyxy, out.tracker_id):  # its output reorders the boxes: match them back
            ids[int(np.argmin(np.abs(boxes - box).sum(axis=1)))] = None if track < 0 else int(track)
        return ids

    return step


def norfair(fps: float) -> Step:
    import norfair as nf

    tracker = nf.Tracker(distance_function="iou", distance_threshold=0.9, hit_counter_max=round(fps), initialization_delay=0)

    def step(t: float, boxes: np.ndarray, scores: np.ndarray) -> list[int | None]:
        found = [nf.Detection(points=box.reshape(2, 2), scores=np.array([s, s]), data=i) for i, (box, s) in enumerate(zip(boxes, scores))]
        ids: list[int | None] = [None] * len(scores)
        for tracked in tracker.update(detections=found):
            if tracked.last_detection is not None and tracked.last_detection in found:
                ids[tracked.last_detection.data] = tracked.id
        return ids

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, required=True, help="detections records of the tracks clip (tools.tracking --save)")
    parser.add_argument("--tracker", choices=["ours", "bytetrack", "sort", "ocsort", "norfair"], default="ours")
    parser.add_argument("--iou", help="roboflow trackers: the IoU class (e.g. GIoU)")
    parser.add_argument("--min-iou", type=float, help="roboflow trackers: minimum_iou_threshold")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.records.read_text().splitlines()]
    fps = (len(records) - 1) / (records[-1]["pts"] - records[0]["pts"])
    step = {"ours": ours, "norfair": lambda: norfair(fps)}.get(args.tracker, lambda: roboflow(args.tracker, fps, args.iou, args.min_iou))()
    spent = 0.0
    for record in records:
        boxes = np.asarray([face["box"] for face in record["faces"]], np.float64).reshape(-1, 4)
        scores = np.asarray([face["score"] for face in record["faces"]], np.float64)
        started = time.process_time()
        tracks = step(record["pts"], boxes, scores)
        spent += time.process_time() - started
        for face, track in zip(record["faces"], tracks):
            face["track"] = track
    scores = evaluate(records, TrackTruth.load(tracks_clip().with_suffix(".gt.json")))
    print(json.dumps({"tracker": args.tracker, "detect_fps": round(fps, 2), **scores, "cpu_ms_per_frame": round(1e3 * spent / len(records), 3)}))


if __name__ == "__main__":
    main()
