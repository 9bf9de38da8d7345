"""Greedy non-maximum suppression over axis-aligned boxes, vectorized with NumPy.

Boxes are ``(K, 4)`` arrays of ``x1, y1, x2, y2`` in any consistent unit. A box is
suppressed when its IoU with an already kept, higher-scoring box is strictly greater
than the threshold. Areas use continuous coordinates (no ``+1`` pixel convention).
"""

from __future__ import annotations

import numpy as np


def _check_inputs(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},) to match boxes, got {scores.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, in descending score order.

    Equal scores keep their input order. Each step costs one set of array operations
    against the remaining candidates, so the Python loop runs once per kept box.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores)
    _check_inputs(boxes, scores, iou_threshold)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[np.intp] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0.0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0.0, None)
        inter = inter_w * inter_h
        union = areas[best] + areas[rest] - inter
        # Two empty boxes have a zero union; they do not overlap, so their IoU is 0.
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """NMS run independently within each group id, as one :func:`nms` call.

    Every group is shifted along both axes by a multiple of the span of all boxes, so
    boxes of different groups can never overlap. ``groups`` holds one integer id per
    box (for example the image index in a batch). Returns kept indices in descending
    score order across all groups.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores)
    groups = np.asarray(groups)
    _check_inputs(boxes, scores, iou_threshold)
    if groups.shape != (boxes.shape[0],):
        raise ValueError(f"groups must have shape ({boxes.shape[0]},) to match boxes, got {groups.shape}")
    if not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must hold integer ids, got dtype {groups.dtype}")
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    _, dense_groups = np.unique(groups, return_inverse=True)
    span = boxes.max() - boxes.min() + 1.0
    shifted = boxes + (dense_groups.reshape(-1) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
