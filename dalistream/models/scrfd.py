"""SCRFD head decoding (insightface ``scrfd_*_bnkps`` ONNX exports), bring-your-own weights.

Per stride 8, 16 and 32 the model outputs a face score ``(A, 1)``, box distances ``(A, 4)``
(left, top, right, bottom, in units of the stride) and landmark offsets ``(A, 10)`` (in units
of the stride), where ``A = 2 * (H // stride) * (W // stride)``: two anchors per cell, both
centred on ``(x * stride, y * stride)``, cells row-major. Exports with a dynamic batch add a
leading ``N`` axis; batch-1 exports do not. Outputs are told apart by shape, not by name or
order. Input: RGB, ``(pixel - 127.5) / 128``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dalistream.models.arrays import HostConstant, array_module
from dalistream.models.convention import InputConvention
from dalistream.models.faces import FaceDecoder

INPUT_CONVENTION = InputConvention("rgb24", (127.5, 127.5, 127.5), (128.0, 128.0, 128.0))
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
_KINDS = {1: "score", 4: "bbox", 10: "kps"}  # last axis length → output kind


def scrfd_anchor_centers(input_width: int, input_height: int) -> np.ndarray:
    """Anchor centres ``(A, 2)`` in input pixels plus their stride ``(A,)``, all strides in output order."""
    per_stride = []
    for stride in STRIDES:
        rows, cols = input_height // stride, input_width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centers = np.stack((xs, ys), axis=-1).reshape(-1, 1, 2) * stride
        centers = np.repeat(centers, ANCHORS_PER_CELL, axis=1).reshape(-1, 2)
        per_stride.append(np.column_stack((centers, np.full(len(centers), stride))))
    return np.concatenate(per_stride).astype(np.float64)


class ScrfdDecoder(FaceDecoder):
    """SCRFD's nine outputs (scores, distances, keypoints per stride);
    :class:`~dalistream.models.faces.FaceDecoder` chooses the faces. Only the chosen anchors
    are decoded."""

    def _prepare(self) -> None:
        input_width, input_height = self.input_width, self.input_height
        self._anchors = HostConstant(scrfd_anchor_centers(input_width, input_height))
        self._per_stride = {
            ANCHORS_PER_CELL * (input_height // s) * (input_width // s): s for s in STRIDES
        }

    def heads(self, outputs: Mapping[str, Any]) -> tuple[Any, ...]:
        """The nine score/bbox/kps outputs (under any names) as (N, A, 1|4|10) over all strides."""
        return self._arrange(outputs)

    def face_scores(self, heads: tuple[Any, ...]) -> Any:
        return heads[0]

    def anchors(self, heads: tuple[Any, ...], image_idx: Any, anchor_idx: Any) -> tuple[Any, Any]:
        _, bbox, kps = heads
        xp = array_module(bbox)
        anchors = self._anchors.on(xp)[anchor_idx]
        centers, stride = anchors[:, :2], anchors[:, 2:]
        distances = bbox[image_idx, anchor_idx].astype(np.float64) * stride
        boxes = xp.concatenate((centers - distances[:, :2], centers + distances[:, 2:]), axis=1)
        offsets = kps[image_idx, anchor_idx].astype(np.float64).reshape(-1, 5, 2) * stride[:, None]
        return boxes, centers[:, None, :] + offsets

    def _arrange(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sort the outputs into (N, A, 1|4|10) arrays over all strides, in anchor order."""
        found: dict[tuple[str, int], np.ndarray] = {}
        for name, array in outputs.items():
            if array.ndim == 2:
                array = array[None]
            kind = _KINDS.get(array.shape[-1]) if array.ndim == 3 else None
            stride = self._per_stride.get(array.shape[1]) if array.ndim == 3 else None
            if kind is None or stride is None or (kind, stride) in found:
                raise ValueError(
                    f"SCRFD output {name!r} of shape {array.shape} does not fit a "
                    f"{self.input_width}x{self.input_height} input (expected [N,] A x 1|4|10 per stride "
                    f"{'/'.join(map(str, STRIDES))}, once each)"
                )
            found[(kind, stride)] = array
        missing = [f"{k}@{s}" for k in _KINDS.values() for s in STRIDES if (k, s) not in found]
        if missing:
            raise ValueError(f"SCRFD outputs missing: {', '.join(missing)} (a *_bnkps export has nine outputs)")
        sizes = {array.shape[0] for array in found.values()}
        if len(sizes) != 1:
            raise ValueError(f"SCRFD outputs disagree on the batch size: {sorted(sizes)}")
        xp = array_module(next(iter(found.values())))
        score, bbox, kps = (xp.concatenate([found[(k, s)] for s in STRIDES], axis=1) for k in _KINDS.values())
        return score[..., 0], bbox, kps
