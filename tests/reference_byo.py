"""Deliberately plain YOLOv5-Face and SCRFD post-processing, used only to check the decoders.

Written from the upstream recipes (deepcam-cn ``non_max_suppression_face``: score = obj * cls,
``xywh2xyxy``; insightface ``SCRFD.forward``: ``np.mgrid`` anchor centres, ``distance2bbox``,
``distance2kps``) with Python loops and floats. Every anchor is decoded, then thresholded.
Shares no code with ``dalistream.models``; NMS and the Detection type come from the plain
RetinaFace reference.
"""

from __future__ import annotations

from reference_retinaface import Detection, greedy_nms


def to_source(
    decoded: list[Detection],
    *,
    score_threshold: float,
    nms_iou: float,
    keep_top_k: int,
    source: tuple[int, int],
    content: tuple[int, int],
) -> list[Detection]:
    """Threshold, NMS, keep the best ``keep_top_k``, divide by the letterbox scale, clip boxes."""
    candidates = sorted((d for d in decoded if d.score > score_threshold), key=lambda d: -d.score)
    kept = greedy_nms([d.box for d in candidates], [d.score for d in candidates], nms_iou)[:keep_top_k]
    scale_x = content[0] / source[0]
    scale_y = content[1] / source[1]
    results = []
    for i in kept:
        det = candidates[i]
        box = [
            min(max(det.box[0] / scale_x, 0.0), source[0]),
            min(max(det.box[1] / scale_y, 0.0), source[1]),
            min(max(det.box[2] / scale_x, 0.0), source[0]),
            min(max(det.box[3] / scale_y, 0.0), source[1]),
        ]
        points = [v / (scale_x if n % 2 == 0 else scale_y) for n, v in enumerate(det.landmarks)]
        results.append(Detection(box, det.score, points))
    return results


def yolov5face_image(rows: list[list[float]]) -> list[Detection]:
    """All anchors of one image decoded: rows of cx, cy, w, h, obj, 10 landmark values, cls."""
    decoded = []
    for row in rows:
        cx, cy, w, h, obj = row[:5]
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        decoded.append(Detection(box, obj * row[15], list(row[5:15])))
    return decoded


def scrfd_image(
    scores: dict[int, list[float]],
    bboxes: dict[int, list[list[float]]],
    kpss: dict[int, list[list[float]]],
    *,
    width: int,
    height: int,
) -> list[Detection]:
    """All anchors of one image decoded; inputs are keyed by stride, one row per anchor."""
    decoded = []
    for stride in (8, 16, 32):
        anchor = 0
        for y in range(height // stride):
            for x in range(width // stride):
                for _ in range(2):
                    cx, cy = x * stride, y * stride
                    d = [v * stride for v in bboxes[stride][anchor]]
                    k = [v * stride for v in kpss[stride][anchor]]
                    box = [cx - d[0], cy - d[1], cx + d[2], cy + d[3]]
                    points = []
                    for p in range(5):
                        points.append(cx + k[2 * p])
                        points.append(cy + k[2 * p + 1])
                    decoded.append(Detection(box, scores[stride][anchor], points))
                    anchor += 1
    return decoded
