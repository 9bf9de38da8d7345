"""Synthetic head outputs of the bring-your-own models (YOLOv5-Face, SCRFD): background anchors
plus planted faces with weaker duplicates, for the decoders' tests on either array module."""

from __future__ import annotations

import numpy as np


def planted_faces(rng: np.random.Generator, width: int, height: int, count: int) -> np.ndarray:
    """``count`` face boxes x1, y1, x2, y2, 12..48 px wide, in distinct 64 px cells (no overlap)."""
    cols = width // 64
    cells = rng.choice(cols * (height // 64), count, replace=False)
    sizes = rng.uniform(12, 48, count)
    x1 = (cells % cols) * 64 + rng.uniform(0, 64 - sizes)
    y1 = (cells // cols) * 64 + rng.uniform(0, 64 - 1.3 * sizes)
    return np.column_stack((x1, y1, x1 + sizes, y1 + sizes * rng.uniform(1.0, 1.3, count)))


def yolo_outputs(rng: np.random.Generator, width: int, height: int, batch: int, planted: int) -> np.ndarray:
    """Background anchors scoring <= 0.3, plus planted faces each with two weaker duplicates."""
    cells = sum(3 * -(-width // s) * -(-height // s) for s in (8, 16, 32))
    pred = np.empty((batch, cells, 16), np.float32)
    pred[..., 0] = rng.uniform(0, width, (batch, cells))
    pred[..., 1] = rng.uniform(0, height, (batch, cells))
    pred[..., 2:4] = rng.uniform(4, 60, (batch, cells, 2))
    pred[..., 4] = rng.uniform(0, 0.3, (batch, cells))
    pred[..., 5:15] = rng.uniform(0, max(width, height), (batch, cells, 10))
    pred[..., 15] = rng.uniform(0.9, 1.0, (batch, cells))
    for image in range(batch):
        faces = planted_faces(rng, width, height, planted)
        slots = rng.choice(cells, planted * 3, replace=False).reshape(planted, 3)
        for face, anchors in zip(faces, slots):
            for copy, anchor in enumerate(anchors):
                jitter = rng.uniform(-1.5, 1.5, 4) * copy
                x1, y1, x2, y2 = face + jitter
                pred[image, anchor, :4] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
                pred[image, anchor, 4] = rng.uniform(0.85, 0.99) - 0.1 * copy
                pred[image, anchor, 15] = rng.uniform(0.9, 1.0)
                pred[image, anchor, 5:15] = np.tile(face[:2], 5) + rng.uniform(0, face[2] - face[0], 10)
    return pred


def scrfd_outputs(
    rng: np.random.Generator, width: int, height: int, batch: int, planted: int
) -> dict[int, dict[str, np.ndarray]]:
    """Per stride (N, A, 1|4|10) heads: background <= 0.3, planted faces with duplicates at neighbours."""
    heads = {}
    for stride in (8, 16, 32):
        anchors = 2 * (height // stride) * (width // stride)
        heads[stride] = {
            "score": rng.uniform(0, 0.3, (batch, anchors, 1)).astype(np.float32),
            "bbox": rng.uniform(0, 4, (batch, anchors, 4)).astype(np.float32),
            "kps": rng.uniform(-2, 2, (batch, anchors, 10)).astype(np.float32),
        }
    for image in range(batch):
        for face in planted_faces(rng, width, height, planted):
            size = face[2] - face[0]
            stride = 8 if size < 32 else 16 if size < 64 else 32
            cols, rows = width // stride, height // stride
            cx = min(int((face[0] + face[2]) / 2 / stride), cols - 1)
            cy = min(int((face[1] + face[3]) / 2 / stride), rows - 1)
            for copy, (dx, a) in enumerate([(0, 0), (0, 1), (1 if cx + 1 < cols else -1, 0)]):
                x = cx + dx
                anchor = 2 * (cy * cols + x) + a
                center = np.array([x * stride, cy * stride] * 2, np.float64)
                jittered = face + rng.uniform(-1.5, 1.5, 4) * copy
                head = heads[stride]
                head["score"][image, anchor, 0] = rng.uniform(0.85, 0.99) - 0.1 * copy
                head["bbox"][image, anchor] = (np.array([1, 1, -1, -1]) * (center - jittered)) / stride
                points = np.tile(face[:2], 5) + rng.uniform(0, size, 10)
                head["kps"][image, anchor] = (points - np.tile(center[:2], 5)) / stride
    return heads
