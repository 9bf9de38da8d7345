"""WIDER FACE evaluation protocol (pure NumPy): ground truth parsing, matching, PR curve, AP.

Re-implemented from the description of the official evaluation (``eval_tools`` of WIDER FACE,
Yang et al. 2016) and its widely used Python port:

- Scores of all detections in the data set are min-max normalized to ``[0, 1]``.
- Per image, detections are taken best score first. Each one is matched to the ground-truth
  face it overlaps most (IoU in the pixel convention ``w = x2 - x1 + 1``), whether or not an
  earlier detection already took that face. With IoU >= 0.5 and the face in the setting's keep
  list, the face counts as recalled; with the face ignored, the detection is neither a true nor
  a false positive (it is dropped from the proposals). Every other detection is a proposal.
- For 1000 score thresholds ``1 - (t + 1) / 1000`` the data set sums the proposals scoring at
  least the threshold and the kept faces recalled by them; precision = recalled / proposals,
  recall = recalled / kept faces.
- AP is the VOC all-point area under the precision envelope.
- Images without any ground-truth face, or without detections, are skipped (their detections
  count for nothing), as in the official tool.

The "all" setting keeps every face (no face is ignored): a plain AP over all annotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SETTINGS = ("easy", "medium", "hard")
"""The official settings, in the column order of the ground-truth file."""
IOU_THRESHOLD = 0.5
THRESHOLDS = 1000


class GroundTruthError(ValueError):
    """The ground-truth file is malformed; the message names the line."""


@dataclass(frozen=True, slots=True)
class ImageTruth:
    """Annotated faces of one image."""

    name: str
    """Path relative to the image folder, e.g. ``0--Parade/0_Parade_Parade_0_102.jpg``."""
    width: int
    height: int
    boxes: np.ndarray
    """``(K, 4)`` float64 ``x1, y1, x2, y2`` with ``x2 = x + w`` (pixels)."""
    keep: np.ndarray
    """``(K, 3)`` bool: the face is in the easy / medium / hard keep list."""


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections of one image, any order: ``boxes`` ``(D, 4)`` x1, y1, x2, y2 and ``scores`` ``(D,)``."""

    boxes: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True, slots=True)
class PrCurve:
    """Precision and recall at each of the :data:`THRESHOLDS` descending score thresholds."""

    precision: np.ndarray
    recall: np.ndarray


def parse_ground_truth(text: str) -> list[ImageTruth]:
    """Parse the ``gt.txt`` format: per image ``name width height``, a count n, n ``x y w h e m h`` lines."""
    lines = text.splitlines()
    images: list[ImageTruth] = []
    i = 0

    def fields(index: int, count: int) -> list[str]:
        if index >= len(lines):
            raise GroundTruthError(f"line {index + 1}: unexpected end of file")
        parts = lines[index].split()
        if len(parts) != count:
            raise GroundTruthError(f"line {index + 1}: expected {count} fields, got {lines[index]!r}")
        return parts

    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        name, width, height = fields(i, 3)
        (count,) = fields(i + 1, 1)
        try:
            size = int(width), int(height)
            n = int(count)
            rows = [[float(v) for v in fields(i + 2 + k, 7)] for k in range(n)]
        except ValueError as exc:
            raise GroundTruthError(f"line {i + 1}: image {name!r}: {exc}") from exc
        table = np.asarray(rows, dtype=np.float64).reshape(n, 7)
        boxes = table[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]
        images.append(ImageTruth(name, size[0], size[1], boxes, table[:, 4:] != 0))
        i += 2 + n
    return images


def load_ground_truth(path: Path) -> list[ImageTruth]:
    """Read and parse a ``gt.txt`` file."""
    return parse_ground_truth(path.read_text(encoding="utf-8"))


def wider_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` of ``x1, y1, x2, y2`` boxes, widths counted as ``x2 - x1 + 1``."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_image(
    boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections to its faces for one setting.

    ``boxes``/``scores``: detections; ``truth``: ``(K, 4)`` faces; ``keep``: ``(K,)`` bool.
    Returns ``proposal`` ``(D,)`` bool (the detection counts as a proposal) and ``recalled_at``
    ``(K,)`` float: the (normalized) score of the best detection that recalls each kept face,
    ``-inf`` where none does (and for ignored faces).
    """
    recalled_at = np.full(truth.shape[0], -np.inf)
    if boxes.shape[0] == 0 or truth.shape[0] == 0:
        return np.ones(boxes.shape[0], dtype=bool), recalled_at
    overlaps = wider_iou(boxes, truth)
    best = overlaps.argmax(axis=1)
    matched = overlaps[np.arange(boxes.shape[0]), best] >= IOU_THRESHOLD
    proposal = ~(matched & ~keep[best])
    hits = matched & keep[best]
    # The best detection of a face decides the threshold from which the face is recalled.
    np.maximum.at(recalled_at, best[hits], scores[hits])
    return proposal, recalled_at


def normalize_scores(detections: Mapping[str, Detections]) -> dict[str, np.ndarray]:
    """Min-max normalize all scores of the data set together, as the official tool does."""
    nonempty = [d.scores for d in detections.values() if d.scores.size]
    if not nonempty:
        return {name: d.scores.astype(np.float64) for name, d in detections.items()}
    low = min(float(s.min()) for s in nonempty)
    high = max(float(s.max()) for s in nonempty)
    span = high - low if high > low else 1.0
    return {name: (d.scores.astype(np.float64) - low) / span for name, d in detections.items()}


def pr_curve(truth: Iterable[ImageTruth], detections: Mapping[str, Detections], setting: str) -> PrCurve:
    """PR curve of one setting (``easy``, ``medium``, ``hard`` or ``all``) over the data set.

    ``detections`` maps image names to their detections; an image without an entry has none.
    """
    if setting not in (*SETTINGS, "all"):
        raise ValueError(f"unknown setting {setting!r}; expected one of {', '.join((*SETTINGS, 'all'))}")
    scores = normalize_scores(detections)
    proposal_scores: list[np.ndarray] = []
    recall_scores: list[np.ndarray] = []
    faces = 0
    for image in truth:
        keep = np.ones(image.boxes.shape[0], dtype=bool) if setting == "all" else image.keep[:, SETTINGS.index(setting)]
        faces += int(keep.sum())
        found = detections.get(image.name)
        if found is None or found.scores.size == 0 or image.boxes.shape[0] == 0:
            continue
        normalized = scores[image.name]
        proposal, recalled_at = match_image(np.asarray(found.boxes, np.float64), normalized, image.boxes, keep)
        proposal_scores.append(normalized[proposal])
        recall_scores.append(recalled_at[keep])
    thresholds = 1.0 - (np.arange(THRESHOLDS) + 1) / THRESHOLDS
    proposals = _count_at_least(np.concatenate(proposal_scores) if proposal_scores else np.empty(0), thresholds)
    recalled = _count_at_least(np.concatenate(recall_scores) if recall_scores else np.empty(0), thresholds)
    precision = np.divide(recalled, proposals, out=np.zeros(THRESHOLDS), where=proposals > 0)
    recall = recalled / faces if faces else np.zeros(THRESHOLDS)
    return PrCurve(precision, recall)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point average precision: area under the monotone precision envelope."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate(truth: Iterable[ImageTruth], detections: Mapping[str, Detections]) -> dict[str, float]:
    """AP in percent for ``easy``, ``medium``, ``hard`` and ``all``."""
    truth = list(truth)
    result = {}
    for setting in (*SETTINGS, "all"):
        curve = pr_curve(truth, detections, setting)
        result[setting] = 100.0 * voc_ap(curve.recall, curve.precision)
    return result


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, how many ``values`` are >= it."""
    ordered = np.sort(values)
    return (ordered.size - np.searchsorted(ordered, thresholds, side="left")).astype(np.float64)
