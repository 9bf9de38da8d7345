"""Faces found in a frame, and the steps every detector's decoder shares to produce them.

A decoder (one per model kind) says what its outputs mean: the face score of every anchor,
and the box and landmarks of chosen anchors. :class:`FaceDecoder` does the rest, in one of
two forms of the same rule (scores above the threshold, at most ``pre_nms_top_k`` per image,
greedy NMS, at most ``max_faces`` per image, best first):

- on the host (NumPy outputs: ONNX Runtime), the candidates are exactly those above the
  threshold and NMS loops once per kept box;
- on the GPU (CuPy outputs: TensorRT, PyTorch), every size is fixed in advance so that no step
  waits for the device to learn one: each image's ``device_candidates`` best anchors (those
  below the threshold marked invalid), their boxes, a fixed number of NMS passes over each
  image's IoU matrix, and the kept faces packed with two checks into one array, copied to the
  host in one transfer per batch. When a check fails — an image had more candidates above the
  threshold than fit (a crowd, or ``eval``'s low threshold), or the NMS passes did not settle
  (a chain of suppressions longer than the passes) — that batch's outputs are copied to the
  host and decoded there, so both forms always give the same faces.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models.arrays import array_module, to_host
from dalistream.models.nms import batched_nms, fixed_nms

DEVICE_CANDIDATES = 512
"""Candidates per image on the GPU (RetinaFace at 960x544 on faces-dev, threshold 0.5: at most
288 anchors above it in an image, median 34)."""
NMS_PASSES = 4
"""Whole-matrix NMS passes on the GPU before the check that they settled (chains of
suppression among faces are two or three long)."""


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


class FaceDecoder(abc.ABC):
    """Named head outputs of a batch, one letterbox per image → :class:`Faces` per image.

    Subclasses say what the outputs mean (:meth:`heads`, :meth:`face_scores`,
    :meth:`anchors`); the module docstring says how faces are chosen on either device.
    """

    def __init__(
        self,
        input_width: int,
        input_height: int,
        score_threshold: float,
        nms_iou: float,
        pre_nms_top_k: int = 5000,
        max_faces: int = 750,
        device_candidates: int = DEVICE_CANDIDATES,
        nms_passes: int = NMS_PASSES,
    ) -> None:
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        if min(pre_nms_top_k, max_faces, device_candidates, nms_passes) < 1:
            raise ValueError(
                "pre_nms_top_k, max_faces, device_candidates and nms_passes must be >= 1, got "
                f"{pre_nms_top_k}, {max_faces}, {device_candidates} and {nms_passes}"
            )
        self.input_width = input_width
        self.input_height = input_height
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.pre_nms_top_k = pre_nms_top_k
        self.max_faces = max_faces
        self.device_candidates = device_candidates
        self.nms_passes = nms_passes
        self._prepare()

    def _prepare(self) -> None:
        """Precompute what depends only on the input size (priors, anchor centres)."""

    @abc.abstractmethod
    def heads(self, outputs: Mapping[str, Any]) -> tuple[Any, ...]:
        """The outputs checked and arranged as :meth:`face_scores` and :meth:`anchors` take them."""

    @abc.abstractmethod
    def face_scores(self, heads: tuple[Any, ...]) -> Any:
        """``(N, A)`` face score of every anchor of every image."""

    @abc.abstractmethod
    def anchors(self, heads: tuple[Any, ...], image_idx: Any, anchor_idx: Any) -> tuple[Any, Any]:
        """Boxes ``(K, 4)`` and landmarks ``(K, 5, 2)`` (float64, input pixels) of the given anchors."""

    def __call__(self, outputs: Mapping[str, Any], letterboxes: Sequence[Letterbox]) -> list[Faces]:
        """Decode one batch; ``letterboxes[i]`` says where image ``i``'s frame sits in the input."""
        heads = self.heads(outputs)
        scores = self.face_scores(heads)
        check_letterboxes(letterboxes, scores.shape[0], self.input_width, self.input_height)
        if array_module(scores) is np:
            return self._on_host(heads, scores, letterboxes)
        faces = self._on_device(heads, scores, letterboxes)
        if faces is None:  # a check failed: the same rule on the host
            return self(self._to_host(outputs), letterboxes)
        return faces

    @staticmethod
    def _to_host(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {name: to_host(array) for name, array in outputs.items()}

    def _on_host(self, heads: tuple[Any, ...], scores: np.ndarray, letterboxes: Sequence[Letterbox]) -> list[Faces]:
        image_idx, anchor_idx = np.nonzero(scores > self.score_threshold)
        kept_scores = scores[image_idx, anchor_idx]
        top = top_k_per_image(image_idx, kept_scores, self.pre_nms_top_k)
        image_idx, anchor_idx, kept_scores = image_idx[top], anchor_idx[top], kept_scores[top]
        boxes, points = self.anchors(heads, image_idx, anchor_idx)
        kept = batched_nms(boxes, kept_scores, image_idx, self.nms_iou)
        boxes, kept_scores, points, image_idx = boxes[kept], kept_scores[kept], points[kept], image_idx[kept]
        order = np.argsort(image_idx, kind="stable")
        counts = np.bincount(image_idx[order], minlength=len(letterboxes))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        faces = []
        for image, letterbox in enumerate(letterboxes):
            sel = order[starts[image] : starts[image] + min(counts[image], self.max_faces)]
            faces.append(to_source(boxes[sel], kept_scores[sel], points[sel], letterbox))
        return faces

    def _on_device(self, heads: tuple[Any, ...], scores: Any, letterboxes: Sequence[Letterbox]) -> list[Faces] | None:
        """The fixed-size form (module docstring); None when one of its checks failed."""
        xp = array_module(scores)
        images, count = scores.shape
        k = min(self.pre_nms_top_k, count, self.device_candidates)
        above = scores > self.score_threshold
        # One sort per image by (score descending, anchor ascending), the host's tie order, with
        # the anchors below the threshold last: scores are probabilities (>= 0), whose float32
        # bit patterns order as they do.
        bits = scores.astype(xp.float32).view(xp.int32).astype(xp.int64)
        rank = xp.where(above, 0x7F800000 - bits, 0x7F800000)
        anchor_idx = xp.argsort(rank * count + xp.arange(count), axis=1)[:, :k]
        valid = xp.take_along_axis(above, anchor_idx, axis=1)
        top_scores = xp.take_along_axis(scores, anchor_idx, axis=1).astype(xp.float64)
        image_idx = xp.broadcast_to(xp.arange(images)[:, None], (images, k))
        boxes, points = self.anchors(heads, image_idx.ravel(), anchor_idx.ravel())
        boxes = boxes.reshape(images, k, 4)
        keep, settled = fixed_nms(boxes, valid, self.nms_iou, self.nms_passes)
        chosen = keep & (xp.cumsum(keep, axis=1) <= self.max_faces)
        overflow = (above.sum(axis=1) > k) & (k < min(self.pre_nms_top_k, count))
        rows = xp.concatenate(
            (boxes, top_scores[..., None], points.reshape(images, k, 10), chosen[..., None].astype(xp.float64)), axis=2
        )
        checks = xp.zeros((images, 1, rows.shape[2]), xp.float64)
        checks[:, 0, 0] = overflow
        checks[:, 0, 1] = ~settled
        packed = to_host(xp.concatenate((rows, checks), axis=1))  # the one transfer
        if packed[:, k, :2].any():
            return None
        faces = []
        for image, letterbox in enumerate(letterboxes):
            kept = packed[image, :k][packed[image, :k, 15] > 0]
            faces.append(to_source(kept[:, :4], kept[:, 4], kept[:, 5:15].reshape(-1, 5, 2), letterbox))
        return faces


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
    if image_idx.size == 0 or int(np.bincount(image_idx).max()) <= k:
        return np.arange(image_idx.size)
    positions = np.arange(image_idx.size)
    order = np.lexsort(np.stack((positions, -scores, image_idx)))  # image, then score descending, then position
    image_sorted = image_idx[order]
    rank = positions - np.searchsorted(image_sorted, image_sorted, side="left")
    return np.sort(order[rank < k])


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
