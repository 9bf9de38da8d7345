"""YOLOv5-Face head decoding (deepcam-cn/yolov5-face ONNX export), bring-your-own weights.

The export's Detect layer already turns the grid outputs into input pixels, so the model has
one output ``(N, A, 16)`` per anchor: ``cx, cy, w, h``, the objectness, five landmarks
``x, y`` and the face class probability (all probabilities already sigmoided). The face
score is ``objectness * class``. Input: RGB scaled to ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dalistream.models.arrays import array_module
from dalistream.models.convention import InputConvention
from dalistream.models.faces import FaceDecoder

INPUT_CONVENTION = InputConvention("rgb24", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
VALUES_PER_ANCHOR = 16


class YoloV5FaceDecoder(FaceDecoder):
    """YOLOv5-Face's one output; :class:`~dalistream.models.faces.FaceDecoder` chooses the
    faces. Only the chosen anchors are converted to corner boxes."""

    def heads(self, outputs: Mapping[str, Any]) -> tuple[Any, ...]:
        """The model's single output (under any name)."""
        if len(outputs) != 1:
            raise ValueError(f"YOLOv5-Face has one output (N, A, {VALUES_PER_ANCHOR}), got {sorted(outputs)}")
        (pred,) = outputs.values()
        if pred.ndim != 3 or pred.shape[2] != VALUES_PER_ANCHOR:
            raise ValueError(f"YOLOv5-Face output must have shape (N, A, {VALUES_PER_ANCHOR}), got {pred.shape}")
        return (pred,)

    def face_scores(self, heads: tuple[Any, ...]) -> Any:
        (pred,) = heads
        return pred[..., 4] * pred[..., 15]

    def anchors(self, heads: tuple[Any, ...], image_idx: Any, anchor_idx: Any) -> tuple[Any, Any]:
        (pred,) = heads
        xp = array_module(pred)
        rows = pred[image_idx, anchor_idx].astype(np.float64)
        half = rows[:, 2:4] / 2
        boxes = xp.concatenate((rows[:, 0:2] - half, rows[:, 0:2] + half), axis=1)
        return boxes, rows[:, 5:15].reshape(-1, 5, 2)
