"""Greedy non-maximum suppression over axis-aligned boxes, on NumPy or CuPy arrays.

Boxes are ``(K, 4)`` arrays of ``x1, y1, x2, y2`` in any consistent unit. A box is
suppressed when its IoU with an already kept, higher-scoring box is strictly greater
than the threshold. Areas use continuous coordinates (no ``+1`` pixel convention).

Two exact forms of the same greedy rule: on the host :func:`nms` loops once per kept box
(cheap for the few hundred candidates left after the score threshold, and memory-light at
eval's low thresholds); on the GPU :func:`fixed_nms` computes each image's pairwise IoU
matrix at once and applies the greedy choice by a fixed number of whole-matrix passes, so no
Python loop runs per box and no step waits for the device. Both are tested against each
other on NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dalistream.models.arrays import array_module


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


def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS run independently within each group id, as one :func:`nms` call: every group is
    shifted along both axes by a multiple of the span of all boxes, so boxes of different
    groups can never overlap. ``groups`` holds one integer id per box (for example the image
    index in a batch). Returns kept indices in descending score order across all groups.
    """
    boxes, scores, groups = np.asarray(boxes, dtype=np.float64), np.asarray(scores), np.asarray(groups)
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


def fixed_nms(boxes: Any, valid: Any, iou_threshold: float, passes: int) -> tuple[Any, Any]:
    """Greedy NMS per image by whole-array steps whose sizes are fixed in advance (NumPy or CuPy).

    ``boxes`` ``(N, K, 4)`` are each image's candidates in rank order (best first; equal
    scores already ordered as :func:`nms` orders them) and ``valid`` ``(N, K)`` says which are
    candidates at all. ``suppresses[j, i]``: ``j`` ranks above ``i`` and overlaps it too much.
    The greedy rule keeps ``i`` exactly when no *kept* ``j`` suppresses it; starting from "keep
    every candidate", each pass re-applies that rule to every box at once, and after pass
    ``t`` the first ``t`` ranks are final. Returns ``keep`` ``(N, K)`` after ``passes`` passes
    and ``settled`` ``(N,)``: whether one more pass changes nothing, i.e. ``keep`` is the
    greedy choice (the rule has exactly one fixed point). Nothing here waits for the device.
    """
    xp = array_module(boxes)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or valid.shape != boxes.shape[:2]:
        raise ValueError(f"boxes must be (N, K, 4) and valid (N, K), got {boxes.shape} and {valid.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    inter_w = xp.maximum(xp.minimum(x2[:, :, None], x2[:, None, :]) - xp.maximum(x1[:, :, None], x1[:, None, :]), 0.0)
    inter_h = xp.maximum(xp.minimum(y2[:, :, None], y2[:, None, :]) - xp.maximum(y1[:, :, None], y1[:, None, :]), 0.0)
    inter = inter_w * inter_h
    union = areas[:, :, None] + areas[:, None, :] - inter
    iou = xp.where(union > 0.0, inter / xp.where(union > 0.0, union, 1.0), 0.0)  # as nms() computes it
    count = boxes.shape[1]
    above = xp.arange(count)[:, None] < xp.arange(count)[None, :]
    suppresses = (iou > iou_threshold) & above & valid[:, :, None] & valid[:, None, :]
    keep = valid
    for _ in range(passes):
        keep = valid & ~xp.any(suppresses & keep[:, :, None], axis=1)
    again = valid & ~xp.any(suppresses & keep[:, :, None], axis=1)
    return keep, xp.all(again == keep, axis=1)
