"""How well faces are tracked: the ``tracks`` clip through the service, its records against the
clip's identities.

The clip (``python -m dalistream.tools.sample --scene tracks``) has walkers that cross and leave
the frame briefly, and ground truth with an id per face. It is played as a file camera
(``pace = "fast"``), and the tracks in its detections records are scored by py-motmetrics, as the
MOTChallenge does: each frame's tracked faces are matched to the true ones at IoU >= 0.5; a
face matched to a true face the clip marks ``ignored`` (less than three quarters visible) is
left out, neither a hit nor a false detection. Reported: ID switches, fragmentations, IDF1
(with its precision and recall), MOTA, and the ID switches within a second of a crossing (two
faces' boxes overlapping).

    python -m dalistream.tools.tracking [--detect-fps 5] [--max-missed-s 1] [--save records.jsonl] [--json]

``--save`` keeps the detections records, e.g. to replay them through other trackers
(``scripts/compare_trackers.py``).

Needs py-motmetrics (``pip install motmetrics``; the ``test`` extra has it) and the clip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from dalistream.geometry import iou_matrix
from dalistream.tools.assets import tracks_clip

MATCH_IOU = 0.5
CROSSING_WINDOW_S = 1.0  # an ID switch this close to two faces overlapping is one "at a crossing"


@dataclass(frozen=True, slots=True)
class TrackTruth:
    """Per frame of the ``tracks`` clip: the counted faces and their ids, the ignored ones."""

    fps: float
    faces: tuple[np.ndarray, ...]  # (K, 4) per frame
    ids: tuple[np.ndarray, ...]  # (K,) per frame
    ignored: tuple[np.ndarray, ...]  # (J, 4) per frame
    ignored_ids: tuple[np.ndarray, ...]  # (J,) per frame

    @classmethod
    def load(cls, path: Path) -> TrackTruth:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "ids" not in data:
            raise ValueError(f"{path} has no face ids: make it with `python -m dalistream.tools.sample --scene tracks`")

        def boxes(key: str) -> tuple[np.ndarray, ...]:
            return tuple(np.asarray(frame, np.float64).reshape(-1, 4) for frame in data[key])

        def ids(key: str) -> tuple[np.ndarray, ...]:
            return tuple(np.asarray(frame, np.int64) for frame in data[key])

        return cls(float(data["fps"]), boxes("faces"), ids("ids"), boxes("ignored"), ids("ignored_ids"))

    def frame(self, pts: float) -> int:
        return round(pts * self.fps) % len(self.faces)

    def crossings(self) -> list[int]:
        """Frames where two faces' boxes (counted or ignored) overlap."""
        frames = []
        for index, (faces, ignored) in enumerate(zip(self.faces, self.ignored)):
            boxes = np.concatenate([faces, ignored])
            overlap = iou_matrix(boxes, boxes)
            np.fill_diagonal(overlap, 0.0)
            if (overlap > 0).any():
                frames.append(index)
        return frames


def evaluate(records: Iterable[Mapping[str, Any]], truth: TrackTruth) -> dict[str, Any]:
    """Tracking scores of ``records`` (one camera's detections) against ``truth``."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator()
    records = [record for record in records if record.get("type") == "detections"]
    frames = set()
    for record in records:
        frame = truth.frame(record["pts"])
        if frame in frames:
            continue  # a looping clip's second play scores the same frame again: count it once
        frames.add(frame)
        tracked = [face for face in record["faces"] if face.get("track") is not None]
        boxes = np.asarray([face["box"] for face in tracked], np.float64).reshape(-1, 4)
        tracks = np.asarray([face["track"] for face in tracked], np.int64)
        keep = ~_matched(truth.faces[frame], truth.ignored[frame], boxes)
        overlap = iou_matrix(truth.faces[frame], boxes[keep])
        distance = np.where(overlap >= MATCH_IOU, 1.0 - overlap, np.nan)
        accumulator.update(truth.ids[frame].tolist(), tracks[keep].tolist(), distance, frameid=frame)
    names = ["idf1", "idp", "idr", "num_switches", "num_fragmentations", "mota", "recall", "precision",
             "num_unique_objects", "num_false_positives", "num_misses"]
    summary = motmetrics.metrics.create().compute(accumulator, metrics=names, name="tracks")
    scores = {name: _plain(summary[name].iloc[0]) for name in names}
    events = accumulator.mot_events
    switch_frames = events[events["Type"] == "SWITCH"].index.get_level_values("FrameId").tolist()
    window = CROSSING_WINDOW_S * truth.fps
    crossings = truth.crossings()
    scores["switches_at_crossings"] = sum(any(abs(frame - c) <= window for c in crossings) for frame in switch_frames)
    scores["switch_frames"] = sorted(int(frame) for frame in switch_frames)
    scores["frames"] = len(frames)
    scores["tracks"] = len({face["track"] for record in records for face in record["faces"] if face.get("track") is not None})
    return scores


def _matched(faces: np.ndarray, ignored: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which ``boxes`` the one-to-one IoU matching against all true faces gives to an ignored one."""
    found = np.zeros(len(boxes), bool)
    if not len(ignored) or not len(boxes):
        return found
    overlap = iou_matrix(np.concatenate([faces, ignored]), boxes)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    hits = overlap[rows, cols] >= MATCH_IOU
    found[cols[hits & (rows >= len(faces))]] = True
    return found


def _plain(value: Any) -> float | int:
    value = value.item()  # a NumPy scalar
    return round(value, 4) if isinstance(value, float) else value


def run(detect_fps: float = 5.0, tracks: Mapping[str, Any] | None = None, clip: Path | None = None) -> list[dict[str, Any]]:
    """The clip through the service as one fast file camera; its records."""
    from dalistream.pipeline.runtime import Runtime
    from dalistream.tools.demo import demo_config

    clip = clip or tracks_clip()
    with tempfile.TemporaryDirectory() as out:
        config = demo_config([clip.as_uri()], Path(out), camera={"pace": "fast"}, tables={"tracks": dict(tracks or {})},
                             detect_fps=detect_fps)
        runtime = Runtime(config)
        asyncio.run(runtime.run(asyncio.Event()))
        return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detect-fps", type=float, default=5.0, help="pipeline.detect_fps (default 5)")
    parser.add_argument("--max-missed-s", type=float, help="tracks.max_missed_s (default: the config's default)")
    parser.add_argument("--save", type=Path, metavar="PATH", help="also write the detections records there (JSON lines)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args(argv)
    clip = tracks_clip()
    truth_path = clip.with_suffix(".gt.json")
    if not clip.is_file() or not truth_path.is_file():
        print(f"{clip} is missing: make it with `{sys.executable} -m dalistream.tools.sample --scene tracks`", file=sys.stderr)
        return 2
    overrides = {} if args.max_missed_s is None else {"max_missed_s": args.max_missed_s}
    records = [r for r in run(args.detect_fps, overrides, clip) if r["type"] == "detections"]
    if args.save is not None:
        args.save.write_text("".join(json.dumps(record) + "\n" for record in records))
    scores = evaluate(records, TrackTruth.load(truth_path))
    scores["detect_fps"] = args.detect_fps
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key:>24}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
