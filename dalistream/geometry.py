"""Letterbox geometry: where a source frame lands inside the model input, and back; how much boxes overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Letterbox:
    """A source frame scaled (aspect kept) into the top-left corner of the model input.

    The rest of the input is padding. Detections found in input pixels map back to
    source pixels by dividing by ``scale_x`` / ``scale_y``.
    """

    source_width: int
    source_height: int
    content_width: int
    content_height: int
    input_width: int
    input_height: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> Letterbox:
        """Largest aspect-preserving fit of the source inside the input (at least 1x1 px)."""
        if min(source_width, source_height, input_width, input_height) <= 0:
            raise ValueError(
                f"letterbox sizes must be positive: source {source_width}x{source_height}, "
                f"input {input_width}x{input_height}"
            )
        scale = min(input_width / source_width, input_height / source_height)
        content_width = min(input_width, max(1, round(source_width * scale)))
        content_height = min(input_height, max(1, round(source_height * scale)))
        return cls(source_width, source_height, content_width, content_height, input_width, input_height)

    @property
    def scale_x(self) -> float:
        return self.content_width / self.source_width

    @property
    def scale_y(self) -> float:
        return self.content_height / self.source_height


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N,4) and ``b`` (M,4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
