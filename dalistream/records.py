"""JSON-lines records, schema v1 (see ARCHITECTURE.md): detections and events (the face
tracks' ``face_appeared`` and ``face_left`` among them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from dalistream.models.faces import Faces

SCHEMA_VERSION = 1


def iso_utc(timestamp: float) -> str:
    """Seconds since the epoch → ISO-8601 UTC with milliseconds, e.g. 2026-11-21T06:31:59.123Z."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detections(
    *,
    camera: str,
    seq: int,
    pts: float,
    wallclock: float,
    width: int,
    height: int,
    latency_ms: float,
    faces: Faces,
) -> dict[str, Any]:
    """One analysed frame. Boxes and landmarks are source pixels rounded to 0.1 px. The face
    tracker adds each face's ``track`` (an id, or None for a face it does not follow)."""
    boxes = np.round(faces.boxes.astype(np.float64), 1).tolist()
    scores = np.round(faces.scores.astype(np.float64), 4).tolist()
    landmarks = np.round(faces.landmarks.astype(np.float64), 1).tolist()
    return {
        "v": SCHEMA_VERSION,
        "type": "detections",
        "camera": camera,
        "seq": seq,
        "pts": round(pts, 6),
        "wallclock": iso_utc(wallclock),
        "width": width,
        "height": height,
        "latency_ms": round(latency_ms, 2),
        "faces": [
            {"box": box, "score": score, "landmarks": marks}
            for box, score, marks in zip(boxes, scores, landmarks)
        ],
    }


def event(*, camera: str | None, event: str, wallclock: float, **fields: Any) -> dict[str, Any]:
    """A camera event (connected, disconnected, gap, dropped, …) or, with ``camera`` None, one
    of the service (output_gap, stopped); ``fields`` add detail."""
    return {
        "v": SCHEMA_VERSION,
        "type": "event",
        "camera": camera,
        "event": event,
        "wallclock": iso_utc(wallclock),
        **fields,
    }
