"""Which picture of a face is its best: a quality score from what the detector already gives.

``quality = score × size × frontal × sharp × inside``, each term in [0, 1]:

- ``score``: the detector's confidence;
- ``size``: the face's height over :data:`FULL_SIZE_PX` (a recognition model's input), at most 1;
- ``frontal``: how evenly the nose sits between the eyes (1 facing the camera, 0 in profile);
- ``sharp``: the variance of the Laplacian of the face's brightness (green), ``v / (v + SHARP_HALF)``
  (motion blur and focus lower it);
- ``inside``: the share of the crop (the box and its margin) inside the frame (a face the frame's
  edge cuts, whose detected box is cut with it, is not whole).

Scores compare pictures of one face over time; they mean nothing across faces. The terms but
``sharp`` need no pixels: :func:`potential` is what a face can score at best, so its sharpness
(:func:`sharpness`, which reads pixels) is measured only when that could beat its track's best.
Pure: NumPy in, NumPy out; :func:`sharpness` takes NumPy or CuPy images (the analysed frame,
wherever it is).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dalistream.models.arrays import array_module

FULL_SIZE_PX = 112.0  # face height (source pixels) from which size no longer adds quality
SHARP_HALF = 100.0  # Laplacian variance (0-255 brightness) at which ``sharp`` is 0.5
SHARP_SIDE_PX = 64  # the face's brightness is sampled on at most this many pixels a side
GREEN = 1  # channel index in both BGR and RGB


def sharpness(image: Any, boxes: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """``(K,)`` variance of the Laplacian of each face's brightness in ``image`` (HWC uint8, BGR
    or RGB: its green channel, most of the brightness and the same in both), the box (source
    pixels) scaled by ``scale`` (x, y) into the image and sampled on at most
    :data:`SHARP_SIDE_PX` rows and columns; 0 for a box under 3 px in the image."""
    xp = array_module(image)
    height, width = image.shape[:2]
    out = np.zeros(len(boxes))
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        left, right = max(0, int(x1 * scale[0])), min(width, int(np.ceil(x2 * scale[0])))
        top, bottom = max(0, int(y1 * scale[1])), min(height, int(np.ceil(y2 * scale[1])))
        if right - left < 3 or bottom - top < 3:
            continue
        step = max(1, (right - left) // SHARP_SIDE_PX, (bottom - top) // SHARP_SIDE_PX)
        luma = image[top:bottom:step, left:right:step, GREEN].astype(xp.float32)
        laplacian = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
        out[index] = float(laplacian.var())
    return out


def potential(scores: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """``(K,)`` each face's quality were it perfectly sharp, ``score × size × frontal × inside``
    (see the module docstring), in a frame of ``size``; ``margin``: the crop's, a share of the
    box on each side."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    height = boxes[:, 3] - boxes[:, 1]
    large = np.clip(height / FULL_SIZE_PX, 0.0, 1.0)
    crops = boxes + np.stack([-margin * (boxes[:, 2] - boxes[:, 0]), -margin * height,
                              margin * (boxes[:, 2] - boxes[:, 0]), margin * height], axis=1)
    inside = (np.clip(np.minimum(crops[:, 2], size[0]) - np.maximum(crops[:, 0], 0), 0, None)
              * np.clip(np.minimum(crops[:, 3], size[1]) - np.maximum(crops[:, 1], 0), 0, None)
              / np.maximum((crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]), 1e-9))
    left = np.abs(points[:, 2, 0] - points[:, 0, 0])
    right = np.abs(points[:, 1, 0] - points[:, 2, 0])
    frontal = 1.0 - np.clip(np.abs(left - right) / np.maximum(left + right, 1e-6), 0.0, 1.0)
    value = np.clip(scores, 0.0, 1.0) * large * frontal * inside
    return np.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)


def quality(potentials: np.ndarray, sharp: np.ndarray) -> np.ndarray:
    """``(K,)`` the faces' quality: their :func:`potential` times ``sharp`` (from :func:`sharpness`)."""
    sharp = np.asarray(sharp, np.float64).reshape(-1)
    return np.nan_to_num(potentials * sharp / (sharp + SHARP_HALF), nan=0.0)
