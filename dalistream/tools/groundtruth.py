"""Ground truth of the bundled sample clip, and how well a run's records match it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dalistream.geometry import iou_matrix


@dataclass(frozen=True, slots=True)
class ClipTruth:
    """Face boxes per frame of a looping clip: frame ``i`` is shown at pts ``i / fps`` (mod length)."""

    fps: float
    faces: tuple[np.ndarray, ...]  # per frame, (K, 4) x1, y1, x2, y2

    @classmethod
    def load(cls, path: Path) -> ClipTruth:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(float(data["fps"]), tuple(np.asarray(f, dtype=np.float64).reshape(-1, 4) for f in data["faces"]))

    def at(self, pts: float) -> np.ndarray:
        return self.faces[round(pts * self.fps) % len(self.faces)]


@dataclass(frozen=True, slots=True)
class Recall:
    found: int
    total: int
    false_positives: int

    @property
    def ratio(self) -> float:
        return self.found / self.total if self.total else 1.0


def recall(records: Iterable[Mapping[str, Any]], truth: ClipTruth, iou: float = 0.5) -> Recall:
    """Greedy one-to-one matching (highest IoU first) of detections to true faces per record."""
    found = total = false_positives = 0
    for record in records:
        if record.get("type") != "detections":
            continue
        true_boxes = truth.at(record["pts"])
        boxes = np.asarray([face["box"] for face in record["faces"]], dtype=np.float64).reshape(-1, 4)
        total += len(true_boxes)
        matched = 0
        if len(true_boxes) and len(boxes):
            overlaps = iou_matrix(true_boxes, boxes)
            while True:
                t, d = np.unravel_index(np.argmax(overlaps), overlaps.shape)
                if overlaps[t, d] < iou:
                    break
                matched += 1
                overlaps[t, :] = -1.0
                overlaps[:, d] = -1.0
        found += matched
        false_positives += len(boxes) - matched
    return Recall(found, total, false_positives)
