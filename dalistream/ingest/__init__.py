"""Where access units come from: RTSP cameras (:mod:`.camera`) and recorded clips (:mod:`.files`)."""

from __future__ import annotations

from dalistream.config import CameraConfig
from dalistream.metrics import Stages

from .camera import CameraIngest
from .files import FileIngest
from .sink import IngestSink, ReceivedAccessUnit

Ingest = CameraIngest | FileIngest


def ingest_for(camera: CameraConfig, sink: IngestSink, stages: Stages) -> Ingest:
    """The task body that feeds ``camera``'s access units to ``sink``: its ``run()`` coroutine
    streams until cancelled (a clip that does not loop returns at its end)."""
    return FileIngest(camera, sink) if camera.is_file else CameraIngest(camera, sink, stages)


__all__ = ["CameraIngest", "FileIngest", "Ingest", "IngestSink", "ReceivedAccessUnit", "ingest_for"]
