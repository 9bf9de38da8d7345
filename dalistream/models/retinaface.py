"""RetinaFace-MobileNet0.25 head decoding: threshold, top-k, decode, NMS, map to source pixels.

The model (a biubug6/Pytorch_Retinaface export) predicts, per prior box ("anchor"),
box offsets ``loc`` ``(N, A, 4)``, softmaxed scores ``conf`` ``(N, A, 2)`` with the face
score in column 1, and five landmark offsets ``landmarks`` ``(N, A, 10)``. Offsets are
relative to the prior and scaled by the SSD variances 0.1 (centres, landmarks) and
0.2 (log sizes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models.nms import batched_nms

STRIDES = (8, 16, 32)  # input px per feature-map cell
MIN_SIZES = ((16, 32), (64, 128), (256, 512))  # prior side lengths in input px, per stride
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


def retinaface_priors(input_width: int, input_height: int) -> np.ndarray:
    """Prior boxes ``(A, 4)`` as normalized ``cx, cy, width, height``, in model output order.

    Per stride: cells row-major (y outer, x inner), and within a cell one prior per min size.
    """
    if input_width <= 0 or input_height <= 0:
        raise ValueError(f"input size must be positive, got {input_width}x{input_height}")
    per_stride = []
    for stride, min_sizes in zip(STRIDES, MIN_SIZES, strict=True):
        rows, cols = math.ceil(input_height / stride), math.ceil(input_width / stride)
        cy, cx = np.meshgrid(
            (np.arange(rows) + 0.5) * stride / input_height,
            (np.arange(cols) + 0.5) * stride / input_width,
            indexing="ij",
        )
        sizes = np.asarray(min_sizes, dtype=np.float64)
        priors = np.empty((rows, cols, len(min_sizes), 4))
        priors[..., 0] = cx[..., None]
        priors[..., 1] = cy[..., None]
        priors[..., 2] = sizes / input_width
        priors[..., 3] = sizes / input_height
        per_stride.append(priors.reshape(-1, 4))
    return np.concatenate(per_stride)


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


class RetinaFaceDecoder:
    """Turns a batch of RetinaFace head outputs into :class:`Faces`, one per image.

    Work is proportional to the anchors above ``score_threshold``, not to all anchors:
    scores are thresholded over the whole batch first, at most ``pre_nms_top_k`` survivors
    per image are kept and decoded, one batched NMS runs for the batch (in input pixels),
    at most ``max_faces`` per image remain, and those are mapped to source pixels.
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
        priors = retinaface_priors(input_width, input_height)
        self.num_priors = priors.shape[0]
        # Priors in input pixels, so decoding lands in input pixels without a rescale.
        self._priors_px = priors * np.array([input_width, input_height, input_width, input_height], dtype=np.float64)

    def __call__(
        self,
        loc: np.ndarray,
        conf: np.ndarray,
        landmarks: np.ndarray,
        letterboxes: Sequence[Letterbox],
    ) -> list[Faces]:
        """Decode one batch; ``letterboxes[i]`` says where image ``i``'s frame sits in the input."""
        batch_size = self._check_batch(loc, conf, landmarks, letterboxes)

        image_idx, anchor_idx = np.nonzero(conf[..., 1] > self.score_threshold)
        scores = conf[image_idx, anchor_idx, 1]
        image_idx, anchor_idx, scores = self._top_k_per_image(image_idx, anchor_idx, scores)

        boxes, points = self._decode(loc[image_idx, anchor_idx], landmarks[image_idx, anchor_idx], anchor_idx)

        kept = batched_nms(boxes, scores, image_idx, self.nms_iou)
        # Group the kept detections by image; a stable sort keeps each image's scores descending.
        kept = kept[np.argsort(image_idx[kept], kind="stable")]
        counts = np.bincount(image_idx[kept], minlength=batch_size)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

        faces = []
        for image, letterbox in enumerate(letterboxes):
            sel = kept[starts[image] : starts[image] + min(counts[image], self.max_faces)]
            faces.append(_to_source(boxes[sel], scores[sel], points[sel], letterbox))
        return faces

    def _check_batch(
        self, loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, letterboxes: Sequence[Letterbox]
    ) -> int:
        if loc.ndim != 3:
            raise ValueError(f"loc must have shape (N, {self.num_priors}, 4), got {loc.shape}")
        batch_size = loc.shape[0]
        for name, array, width in (("loc", loc, 4), ("conf", conf, 2), ("landmarks", landmarks, 10)):
            expected = (batch_size, self.num_priors, width)
            if array.shape != expected:
                raise ValueError(
                    f"{name} shape mismatch for a {self.input_width}x{self.input_height} input: "
                    f"expected {expected}, got {array.shape}"
                )
        if len(letterboxes) != batch_size:
            raise ValueError(f"expected {batch_size} letterboxes (one per batch item), got {len(letterboxes)}")
        for letterbox in letterboxes:
            if (letterbox.input_width, letterbox.input_height) != (self.input_width, self.input_height):
                raise ValueError(
                    f"letterbox input {letterbox.input_width}x{letterbox.input_height} does not match "
                    f"decoder input {self.input_width}x{self.input_height}"
                )
        return batch_size

    def _top_k_per_image(
        self, image_idx: np.ndarray, anchor_idx: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep each image's ``pre_nms_top_k`` best survivors (ties by anchor order)."""
        if image_idx.size == 0 or np.bincount(image_idx).max() <= self.pre_nms_top_k:
            return image_idx, anchor_idx, scores
        order = np.lexsort((-scores, image_idx))  # stable: image ascending, then score descending
        image_sorted = image_idx[order]
        group_start = np.searchsorted(image_sorted, image_sorted, side="left")
        rank = np.arange(order.size) - group_start
        order = order[rank < self.pre_nms_top_k]
        return image_idx[order], anchor_idx[order], scores[order]

    def _decode(
        self, loc: np.ndarray, landmarks: np.ndarray, anchor_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(K, 4)`` and landmarks ``(K, 5, 2)`` in input pixels for the given anchors."""
        priors = self._priors_px[anchor_idx]
        centers, sizes = priors[:, None, :2], priors[:, None, 2:]
        loc = loc.astype(np.float64)
        box_centers = centers[:, 0] + loc[:, :2] * CENTER_VARIANCE * sizes[:, 0]
        box_sizes = sizes[:, 0] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.concatenate((box_centers - box_sizes / 2, box_centers + box_sizes / 2), axis=1)
        points = centers + landmarks.reshape(-1, 5, 2).astype(np.float64) * CENTER_VARIANCE * sizes
        return boxes, points


def _to_source(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, letterbox: Letterbox) -> Faces:
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
