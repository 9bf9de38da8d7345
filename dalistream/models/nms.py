"""Greedy non-maximum suppression over axis-aligned boxes, on NumPy or CuPy arrays.

Boxes are ``(K, 4)`` arrays of ``x1, y1, x2, y2`` in any consistent unit. A box is
suppressed when its IoU with an already kept, higher-scoring box is strictly greater
than the threshold. Areas use continuous coordinates (no ``+1`` pixel convention).

Two exact forms of the same greedy rule: on the host :func:`nms` loops once per kept box
(cheap for the few hundred candidates left after the score threshold, and memory-light at
eval's low thresholds); on the GPU :func:`matrix_nms` computes each image's pairwise IoU
matrix at once and settles the greedy choice by a few whole-matrix passes, so no Python
loop runs per box and nothing but the kept indices leaves the device. Both are tested
against each other on NumPy.
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


def batched_nms(boxes: Any, scores: Any, groups: Any, iou_threshold: float) -> Any:
    """NMS run independently within each group id; CuPy inputs go to :func:`matrix_nms`.

    On the host it is one :func:`nms` call: every group is shifted along both axes by a
    multiple of the span of all boxes, so boxes of different groups can never overlap.
    ``groups`` holds one integer id per box (for example the image index in a batch).
    Returns kept indices in descending score order across all groups.
    """
    if array_module(boxes) is not np:
        return matrix_nms(boxes, scores, groups, iou_threshold)
    boxes, scores, groups = _grouped(boxes, scores, groups, iou_threshold)
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    _, dense_groups = np.unique(groups, return_inverse=True)
    span = boxes.max() - boxes.min() + 1.0
    shifted = boxes + (dense_groups.reshape(-1) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def matrix_nms(boxes: Any, scores: Any, groups: Any, iou_threshold: float) -> Any:
    """The same choice as :func:`batched_nms`, by whole-array steps of the inputs' array module.

    Per group, candidates are ranked by score (ties by input order) and the pairwise IoU
    matrix gives ``suppresses[j, i]``: ``j`` ranks above ``i`` and overlaps it too much. The
    greedy rule keeps ``i`` exactly when no *kept* ``j`` suppresses it; starting from "keep
    all", each pass re-applies that rule to every box at once. After pass ``t`` the first
    ``t`` ranks are final (rank 0 always is), so the passes settle in at most ``K`` steps,
    in practice as many as the longest chain of suppressions (two or three for faces).
    Returns kept indices in descending score order across all groups.
    """
    xp = array_module(boxes)
    boxes, scores, groups = _grouped(boxes, scores, groups, iou_threshold)
    if boxes.shape[0] == 0:
        return xp.empty(0, dtype=xp.intp)
    kept = [
        members[_greedy_by_matrix(boxes[members], scores[members], iou_threshold)]
        for members in (xp.nonzero(groups == group)[0] for group in xp.unique(groups).tolist())
    ]
    kept = xp.concatenate(kept)
    return kept[_descending(scores[kept], kept)]


def _grouped(boxes: Any, scores: Any, groups: Any, iou_threshold: float) -> tuple[Any, Any, Any]:
    """The inputs of a batched NMS as arrays of their module (boxes in float64), checked."""
    xp = array_module(boxes)
    boxes, scores, groups = xp.asarray(boxes, dtype=xp.float64), xp.asarray(scores), xp.asarray(groups)
    _check_inputs(boxes, scores, iou_threshold)
    if groups.shape != (boxes.shape[0],):
        raise ValueError(f"groups must have shape ({boxes.shape[0]},) to match boxes, got {groups.shape}")
    if not np.issubdtype(groups.dtype, np.integer):  # CuPy dtypes are NumPy dtypes
        raise ValueError(f"groups must hold integer ids, got dtype {groups.dtype}")
    return boxes, scores, groups


def _descending(scores: Any, positions: Any) -> Any:
    """Order of ``scores`` from highest to lowest, equal scores by ``positions``."""
    xp = array_module(scores)
    return xp.lexsort(xp.stack((positions, -scores)))


def _greedy_by_matrix(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Indices kept by greedy NMS among ``boxes`` of one group, in descending score order."""
    xp = array_module(boxes)
    order = _descending(scores, xp.arange(scores.shape[0]))
    x1, y1, x2, y2 = boxes[order].T
    areas = (x2 - x1) * (y2 - y1)
    inter_w = xp.maximum(xp.minimum(x2[:, None], x2[None, :]) - xp.maximum(x1[:, None], x1[None, :]), 0.0)
    inter_h = xp.maximum(xp.minimum(y2[:, None], y2[None, :]) - xp.maximum(y1[:, None], y1[None, :]), 0.0)
    inter = inter_w * inter_h
    union = areas[:, None] + areas[None, :] - inter
    iou = xp.where(union > 0.0, inter / xp.where(union > 0.0, union, 1.0), 0.0)
    suppresses = xp.triu(iou > iou_threshold, k=1)
    keep = xp.ones(order.shape[0], dtype=bool)
    for _ in range(order.shape[0]):
        settled = ~xp.any(suppresses & keep[:, None], axis=0)
        if bool(xp.all(settled == keep)):
            break
        keep = settled
    return order[keep]
