"""Detector choice by ``model.kind``: each kind's input convention and output decoder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.models import scrfd, yolov5face
from dalistream.models.convention import InputConvention
from dalistream.models.faces import Faces
from dalistream.models.retinaface import RETINAFACE_MEAN_BGR, RETINAFACE_STD, RetinaFaceDecoder

MODEL_KINDS = ("retinaface", "yolov5face", "scrfd")

RETINAFACE_INPUT = InputConvention("bgr24", RETINAFACE_MEAN_BGR, RETINAFACE_STD)

OutputDecoder = Callable[[Mapping[str, np.ndarray], Sequence[Letterbox]], list[Faces]]
"""Named model outputs of one batch + one letterbox per image → faces per image."""


def input_convention(kind: str) -> InputConvention:
    """The pixel format and normalization the ``kind`` of model was trained with."""
    match kind:
        case "retinaface":
            return RETINAFACE_INPUT
        case "yolov5face":
            return yolov5face.INPUT_CONVENTION
        case "scrfd":
            return scrfd.INPUT_CONVENTION
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def output_decoder(
    kind: str, input_width: int, input_height: int, score_threshold: float, nms_iou: float
) -> OutputDecoder:
    """The decoder for ``kind``'s outputs at this input size."""
    match kind:
        case "retinaface":
            return RetinaFaceDecoder(input_width, input_height, score_threshold, nms_iou)
        case "yolov5face":
            return yolov5face.YoloV5FaceDecoder(input_width, input_height, score_threshold, nms_iou)
        case "scrfd":
            return scrfd.ScrfdDecoder(input_width, input_height, score_threshold, nms_iou)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
