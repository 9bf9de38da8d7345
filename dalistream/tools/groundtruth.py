"""Ground truth of the bundled sample clip, and how well a run's records match it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N,4) and ``b`` (M,4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


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
