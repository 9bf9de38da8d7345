"""What a detector expects as input, and the per-image finishing step its decoders share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models.nms import batched_nms
from dalistream.models.retinaface import Faces, _to_source


@dataclass(frozen=True, slots=True)
class InputConvention:
    """How a model's input tensor is made from 8-bit pixels: ``(pixel - mean) / std`` per channel."""

    pixel_format: str
    """PyAV/swscale format the frame is converted to: ``"bgr24"`` or ``"rgb24"``."""
    mean: tuple[float, float, float]
    """Per-channel mean, in the channel order of ``pixel_format``."""
    std: tuple[float, float, float]
    """Per-channel divisor, in the channel order of ``pixel_format``."""


def check_thresholds(score_threshold: float, nms_iou: float, pre_nms_top_k: int, max_faces: int) -> None:
    """Raise ``ValueError`` for decoder settings out of range (same limits as RetinaFace's)."""
    if not 0.0 <= score_threshold < 1.0:
        raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
    if not 0.0 <= nms_iou <= 1.0:
        raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
    if pre_nms_top_k < 1 or max_faces < 1:
        raise ValueError(f"pre_nms_top_k and max_faces must be >= 1, got {pre_nms_top_k} and {max_faces}")


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
    """Indices (into the survivors) of each image's ``k`` best scores, ties by survivor order."""
    if image_idx.size == 0 or np.bincount(image_idx).max() <= k:
        return np.arange(image_idx.size)
    order = np.lexsort((-scores, image_idx))  # stable: image ascending, then score descending
    image_sorted = image_idx[order]
    rank = np.arange(order.size) - np.searchsorted(image_sorted, image_sorted, side="left")
    return np.sort(order[rank < k])


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
    of the whole batch and ``image_idx`` ``(K,)`` says which image each belongs to.
    """
    kept = batched_nms(boxes, scores, image_idx, nms_iou)
    kept = kept[np.argsort(image_idx[kept], kind="stable")]
    counts = np.bincount(image_idx[kept], minlength=len(letterboxes))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    faces = []
    for image, letterbox in enumerate(letterboxes):
        sel = kept[starts[image] : starts[image] + min(counts[image], max_faces)]
        faces.append(_to_source(boxes[sel], scores[sel], points[sel], letterbox))
    return faces
