"""Deliberately plain RetinaFace post-processing, used only to check the production decoder.

Written from the Pytorch_Retinaface recipe (``PriorBox`` with ``itertools.product``,
``decode``/``decode_landm``, ``py_cpu_nms``) with Python loops and floats, and sharing
no code with ``dalistream.models``. Slow on purpose: every anchor is decoded.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

STEPS = [8, 16, 32]
MIN_SIZES = [[16, 32], [64, 128], [256, 512]]


@dataclass
class Detection:
    box: list[float]  # x1, y1, x2, y2
    score: float
    landmarks: list[float]  # x0, y0, ..., x4, y4


def prior_box(width: int, height: int) -> list[tuple[float, float, float, float]]:
    """Anchors as normalized (cx, cy, s_kx, s_ky), like ``PriorBox.forward``."""
    feature_maps = [(math.ceil(height / step), math.ceil(width / step)) for step in STEPS]
    anchors = []
    for k, (rows, cols) in enumerate(feature_maps):
        for i, j in itertools.product(range(rows), range(cols)):
            for min_size in MIN_SIZES[k]:
                s_kx = min_size / width
                s_ky = min_size / height
                cx = (j + 0.5) * STEPS[k] / width
                cy = (i + 0.5) * STEPS[k] / height
                anchors.append((cx, cy, s_kx, s_ky))
    return anchors


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (0 when both are empty)."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Walk boxes best first; keep one unless it overlaps a kept box by more than threshold."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])  # sorted() is stable
    kept: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def postprocess_image(
    loc: list[list[float]],
    conf: list[list[float]],
    landms: list[list[float]],
    *,
    width: int,
    height: int,
    source_width: int,
    source_height: int,
    content_width: int,
    content_height: int,
    score_threshold: float,
    nms_iou: float,
    top_k: int,
    keep_top_k: int,
) -> list[Detection]:
    """Detections for one image, best first, in source pixels."""
    anchors = prior_box(width, height)
    if len(anchors) != len(loc):
        raise ValueError(f"{len(anchors)} anchors but {len(loc)} predictions")

    decoded = []
    for (cx, cy, sx, sy), d, c, lm in zip(anchors, loc, conf, landms):
        box_cx = cx + d[0] * 0.1 * sx
        box_cy = cy + d[1] * 0.1 * sy
        box_w = sx * math.exp(d[2] * 0.2)
        box_h = sy * math.exp(d[3] * 0.2)
        box = [
            (box_cx - box_w / 2) * width,
            (box_cy - box_h / 2) * height,
            (box_cx + box_w / 2) * width,
            (box_cy + box_h / 2) * height,
        ]
        points = []
        for p in range(5):
            points.append((cx + lm[2 * p] * 0.1 * sx) * width)
            points.append((cy + lm[2 * p + 1] * 0.1 * sy) * height)
        decoded.append(Detection(box, c[1], points))

    candidates = [det for det in decoded if det.score > score_threshold]
    candidates = sorted(candidates, key=lambda det: -det.score)[:top_k]
    kept = greedy_nms([det.box for det in candidates], [det.score for det in candidates], nms_iou)
    kept = kept[:keep_top_k]

    scale_x = content_width / source_width
    scale_y = content_height / source_height
    results = []
    for i in kept:
        det = candidates[i]
        x1, y1, x2, y2 = det.box
        box = [
            min(max(x1 / scale_x, 0.0), source_width),
            min(max(y1 / scale_y, 0.0), source_height),
            min(max(x2 / scale_x, 0.0), source_width),
            min(max(y2 / scale_y, 0.0), source_height),
        ]
        points = [v / (scale_x if n % 2 == 0 else scale_y) for n, v in enumerate(det.landmarks)]
        results.append(Detection(box, det.score, points))
    return results
