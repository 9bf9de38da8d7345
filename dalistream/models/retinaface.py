"""RetinaFace-MobileNet0.25 head decoding: threshold, top-k, decode, NMS, map to source pixels.

The model (a biubug6/Pytorch_Retinaface export) predicts, per prior box ("anchor"),
box offsets ``loc`` ``(N, A, 4)``, softmaxed scores ``conf`` ``(N, A, 2)`` with the face
score in column 1, and five landmark offsets ``landmarks`` ``(N, A, 10)``. Offsets are
relative to the prior and scaled by the SSD variances 0.1 (centres, landmarks) and
0.2 (log sizes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dalistream.models.arrays import HostConstant, array_module
from dalistream.models.faces import FaceDecoder

# Pytorch_Retinaface was trained on BGR images with these channel means, std 1.
RETINAFACE_MEAN_BGR = (104.0, 117.0, 123.0)
RETINAFACE_STD = (1.0, 1.0, 1.0)
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


class RetinaFaceDecoder(FaceDecoder):
    """RetinaFace's outputs ``loc``, ``conf``, ``landmarks`` (see the module docstring);
    :class:`~dalistream.models.faces.FaceDecoder` chooses the faces. Only the chosen anchors
    are decoded."""

    def _prepare(self) -> None:
        input_width, input_height = self.input_width, self.input_height
        priors = retinaface_priors(input_width, input_height)
        self.num_priors = priors.shape[0]
        # Priors in input pixels, so decoding lands in input pixels without a rescale.
        self._priors_px = HostConstant(priors * np.array([input_width, input_height, input_width, input_height], dtype=np.float64))

    def heads(self, outputs: Mapping[str, Any]) -> tuple[Any, ...]:
        missing = {"loc", "conf", "landmarks"} - set(outputs)
        if missing:
            raise ValueError(f"RetinaFace outputs must be named loc, conf, landmarks; got {sorted(outputs)}")
        loc, conf, landmarks = outputs["loc"], outputs["conf"], outputs["landmarks"]
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
        return loc, conf, landmarks

    def face_scores(self, heads: tuple[Any, ...]) -> Any:
        return heads[1][..., 1]

    def anchors(self, heads: tuple[Any, ...], image_idx: Any, anchor_idx: Any) -> tuple[Any, Any]:
        loc, _, landmarks = heads
        return self._decode(loc[image_idx, anchor_idx], landmarks[image_idx, anchor_idx], anchor_idx)

    def _decode(
        self, loc: np.ndarray, landmarks: np.ndarray, anchor_idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(K, 4)`` and landmarks ``(K, 5, 2)`` in input pixels for the given anchors."""
        xp = array_module(loc)
        priors = self._priors_px.on(xp)[anchor_idx]
        centers, sizes = priors[:, None, :2], priors[:, None, 2:]
        loc = loc.astype(np.float64)
        box_centers = centers[:, 0] + loc[:, :2] * CENTER_VARIANCE * sizes[:, 0]
        box_sizes = sizes[:, 0] * xp.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = xp.concatenate((box_centers - box_sizes / 2, box_centers + box_sizes / 2), axis=1)
        points = centers + landmarks.reshape(-1, 5, 2).astype(np.float64) * CENTER_VARIANCE * sizes
        return boxes, points
