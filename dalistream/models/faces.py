"""Faces found in a frame, and the steps every detector's decoder shares to produce them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models.arrays import array_module, to_host
from dalistream.models.nms import batched_nms


@dataclass(frozen=True, slots=True)
class Faces:
    """Faces found in one source frame, highest score first."""

    boxes: np.ndarray
    """``(K, 4)`` float32 ``x1, y1, x2, y2`` in source pixels, clipped to the frame."""
    scores: np.ndarray
    """``(K,)`` float32 face scores, descending."""
    landmarks: np.ndarray
    """``(K, 5, 2)`` float32 ``x, y`` in source pixels: left eye, right eye, nose, left and
    right mouth corner, in the model's order. Not clipped."""


class FaceDecoder:
    """What every detector's decoder is configured with; subclasses turn head outputs into :class:`Faces`.

    Scores are thresholded over the whole batch first, at most ``pre_nms_top_k`` survivors per
    image are decoded, one batched NMS runs, and at most ``max_faces`` per image remain.
    """

    def __init__(
        self,
        input_width: int,
        input_height: int,
        score_threshold: float,
        nms_iou: float,
        pre_nms_top_k: int = 5000,
        max_faces: int = 750,
    ) -> None:
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        if pre_nms_top_k < 1 or max_faces < 1:
            raise ValueError(f"pre_nms_top_k and max_faces must be >= 1, got {pre_nms_top_k} and {max_faces}")
        self.input_width = input_width
        self.input_height = input_height
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.pre_nms_top_k = pre_nms_top_k
        self.max_faces = max_faces
        self._prepare()

    def _prepare(self) -> None:
        """Precompute what depends only on the input size (priors, anchor centres)."""


def check_letterboxes(letterboxes: Sequence[Letterbox], batch_size: int, input_width: int, input_height: int) -> None:
    """One letterbox per image, each for this decoder's input size."""
    if len(letterboxes) != batch_size:
        raise ValueError(f"expected {batch_size} letterboxes (one per batch item), got {len(letterboxes)}")
    for letterbox in letterboxes:
        if (letterbox.input_width, letterbox.input_height) != (input_width, input_height):
            raise ValueError(
                f"letterbox input {letterbox.input_width}x{letterbox.input_height} does not match "
                f"decoder input {input_width}x{input_height}"
            )


def top_k_per_image(image_idx: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (into the survivors) of each image's ``k`` best scores, ties by survivor order.

    NumPy or CuPy arrays (the result is of the same module)."""
    xp = array_module(image_idx)
    if image_idx.size == 0 or int(xp.bincount(image_idx).max()) <= k:
        return xp.arange(image_idx.size)
    positions = xp.arange(image_idx.size)
    order = xp.lexsort(xp.stack((positions, -scores, image_idx)))  # image, then score descending, then position
    image_sorted = image_idx[order]
    rank = positions - xp.searchsorted(image_sorted, image_sorted, side="left")
    return xp.sort(order[rank < k])


def finish(
    boxes: np.ndarray,
    scores: np.ndarray,
    points: np.ndarray,
    image_idx: np.ndarray,
    letterboxes: Sequence[Letterbox],
    nms_iou: float,
    max_faces: int,
) -> list[Faces]:
    """Batched NMS in input pixels, at most ``max_faces`` per image, mapped to source pixels.

    ``boxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``points`` ``(K, 5, 2)`` are the decoded survivors
    of the whole batch and ``image_idx`` ``(K,)`` says which image each belongs to. They may be
    on the GPU (CuPy): NMS runs there and only the kept faces are copied to the host.
    """
    kept = batched_nms(boxes, scores, image_idx, nms_iou)
    boxes, scores, points, image_idx = (to_host(array[kept]) for array in (boxes, scores, points, image_idx))
    kept = np.argsort(image_idx, kind="stable")
    counts = np.bincount(image_idx[kept], minlength=len(letterboxes))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    faces = []
    for image, letterbox in enumerate(letterboxes):
        sel = kept[starts[image] : starts[image] + min(counts[image], max_faces)]
        faces.append(to_source(boxes[sel], scores[sel], points[sel], letterbox))
    return faces


def to_source(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, letterbox: Letterbox) -> Faces:
    """Map input-pixel detections of one image to its source frame; boxes are clipped."""
    scale = np.array([letterbox.scale_x, letterbox.scale_y])
    boxes = (boxes.reshape(-1, 2, 2) / scale).reshape(-1, 4)
    np.clip(boxes[:, 0::2], 0.0, letterbox.source_width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, letterbox.source_height, out=boxes[:, 1::2])
    return Faces(
        boxes=boxes.astype(np.float32),
        scores=scores.astype(np.float32),
        landmarks=(points / scale).astype(np.float32),
    )
