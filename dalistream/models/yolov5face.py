"""YOLOv5-Face head decoding (deepcam-cn/yolov5-face ONNX export), bring-your-own weights.

The export's Detect layer already turns the grid outputs into input pixels, so the model has
one output ``(N, A, 16)`` per anchor: ``cx, cy, w, h``, the objectness, five landmarks
``x, y`` and the face class probability (all probabilities already sigmoided). The face
score is ``objectness * class``. Input: RGB scaled to ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models.arrays import array_module
from dalistream.models.convention import InputConvention
from dalistream.models.faces import FaceDecoder, Faces, check_letterboxes, finish, top_k_per_image

INPUT_CONVENTION = InputConvention("rgb24", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
VALUES_PER_ANCHOR = 16


class YoloV5FaceDecoder(FaceDecoder):
    """Turns a batch of YOLOv5-Face outputs into :class:`Faces`, one per image.

    Scores are thresholded over the whole batch first; only survivors (at most
    ``pre_nms_top_k`` per image) are converted to corner boxes, then one batched NMS runs.
    """

    def __call__(self, outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Letterbox]) -> list[Faces]:
        """Decode one batch; ``outputs`` holds the model's single output under any name."""
        if len(outputs) != 1:
            raise ValueError(f"YOLOv5-Face has one output (N, A, {VALUES_PER_ANCHOR}), got {sorted(outputs)}")
        (pred,) = outputs.values()
        if pred.ndim != 3 or pred.shape[2] != VALUES_PER_ANCHOR:
            raise ValueError(f"YOLOv5-Face output must have shape (N, A, {VALUES_PER_ANCHOR}), got {pred.shape}")
        check_letterboxes(letterboxes, pred.shape[0], self.input_width, self.input_height)

        all_scores = pred[..., 4] * pred[..., 15]
        xp = array_module(pred)
        image_idx, anchor_idx = xp.nonzero(all_scores > self.score_threshold)
        scores = all_scores[image_idx, anchor_idx]
        top = top_k_per_image(image_idx, scores, self.pre_nms_top_k)
        image_idx, anchor_idx, scores = image_idx[top], anchor_idx[top], scores[top]

        rows = pred[image_idx, anchor_idx].astype(np.float64)
        half = rows[:, 2:4] / 2
        boxes = xp.concatenate((rows[:, 0:2] - half, rows[:, 0:2] + half), axis=1)
        points = rows[:, 5:15].reshape(-1, 5, 2)
        return finish(boxes, scores, points, image_idx, letterboxes, self.nms_iou, self.max_faces)
