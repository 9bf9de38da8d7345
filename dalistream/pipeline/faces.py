"""The runtime's face stage: each camera's tracks, and the crops of their best pictures.

Each analysed frame's record goes through its camera's
:class:`~dalistream.tracks.faces.CameraTracks` on the inference thread that analysed it (a
camera's frames are analysed one at a time, in order): its faces get their ``track``, the
frame's ``face_left`` / ``face_appeared`` events come back, and the crops a track's better
picture calls for are cut from the frame's full-resolution picture
(:class:`~dalistream.decode.FullFrame`, which the frame holds only with crops on) and handed to
the :class:`~dalistream.sinks.crops.CropWriter`. The event loop reads the tracks (HTTP, ending
them when a camera or the service stops) under the same per-camera lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from dalistream.config import Config
from dalistream.decode import CropError, SampledFrame
from dalistream.metrics import Stages
from dalistream.sinks.crops import CropWriter
from dalistream.tracks.faces import CameraTracks, Frame, crop_box
from dalistream.tracks.quality import sharpness

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Camera:
    tracks: CameraTracks
    lock: threading.Lock = field(default_factory=threading.Lock)
    reported: Counter = field(default_factory=Counter)  # untracked faces already in events
    crop_failed: bool = False  # said once


class FaceTracking:
    """Every camera's tracks (see the module docstring); ``emit`` writes event records (the
    crop writer's, from its thread)."""

    def __init__(self, config: Config, stages: Stages, emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self._config = config.tracks
        self._margin = config.faces.margin
        self.crops = config.tracks.enabled and config.faces.crops
        self._stages = stages
        self._cameras: dict[str, _Camera] = {}
        self.writer = CropWriter(config.output.dir, keep_days=config.faces.keep_days, max_bytes=int(config.faces.max_mb * 2**20),
                                 emit=emit, stages=stages) if self.crops else None

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def add(self, camera: str, first_track: int = 1) -> None:
        """Track ``camera``'s faces, its ids from ``first_track``."""
        if self.enabled:
            self._cameras[camera] = _Camera(CameraTracks(
                camera, max_missed_s=self._config.max_missed_s, max_tracks=self._config.max_per_camera,
                min_score=self._config.min_score, crops=self.crops, margin=self._margin, first_id=first_track))

    def remove(self, camera: str) -> int:
        """Forget ``camera`` (its tracks ended first); the id its next track would have had."""
        state = self._cameras.pop(camera, None)
        return 1 if state is None else state.tracks.next_id

    def next_track(self, camera: str) -> int:
        """The id ``camera``'s next track gets."""
        state = self._cameras.get(camera)
        return 1 if state is None else state.tracks.next_id

    def track(self, frame: SampledFrame, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Give ``record``'s faces their tracks (on the inference thread); the frame's events."""
        state = self._cameras.get(frame.camera)
        if state is None:
            return []
        with self._stages.measure("track"), state.lock:
            faces = record["faces"]
            boxes = np.asarray([face["box"] for face in faces], np.float64).reshape(-1, 4)
            size = (record["width"], record["height"])
            sharp = None
            if self.crops and frame.full is not None:
                scale = (frame.image.shape[1] / size[0], frame.image.shape[0] / size[1])

                def sharp(indices: list[int]) -> np.ndarray:
                    return sharpness(frame.image, boxes[indices], scale)
            update = state.tracks.update(Frame(
                frame.pts, frame.received, frame.wallclock, size, boxes,
                np.asarray([face["score"] for face in faces], np.float64),
                np.asarray([face["landmarks"] for face in faces], np.float64).reshape(-1, 5, 2), sharp))
            for face, track in zip(faces, update.tracks):
                face["track"] = track
            for index, track in update.improved:
                try:
                    state.tracks.keep_crop(track, frame.full.crop(crop_box(faces[index]["box"], self._margin, size)))
                except CropError as exc:  # the camera's picture, not a bug: that picture is not kept
                    if not state.crop_failed:
                        log.warning("face crop failed; tracks go on without that picture", camera=frame.camera, error=str(exc))
                    state.crop_failed = True
            self._write_crops(state)
        return update.events

    def end(self, camera: str, reason: str) -> list[dict[str, Any]]:
        """End ``camera``'s live tracks for ``reason``: their ``face_left`` events."""
        state = self._cameras.get(camera)
        if state is None:
            return []
        with state.lock:
            events = state.tracks.end(reason, time.time())
            self._write_crops(state)
        return events

    def live(self, camera: str) -> int:
        """Tracks of ``camera`` in view now."""
        state = self._cameras.get(camera)
        return 0 if state is None else state.tracks.live

    def views(self, camera: str) -> list[dict[str, Any]]:
        """``camera``'s live and recent tracks, latest first (empty when tracking is off)."""
        state = self._cameras.get(camera)
        if state is None:
            return []
        with state.lock:
            return state.tracks.views()

    def untracked(self, camera: str) -> dict[str, int]:
        """Faces not tracked since the last call, by reason (``max_per_camera``, ``invalid_box``)."""
        state = self._cameras.get(camera)
        if state is None:
            return {}
        with state.lock:
            counts = state.tracks.untracked - state.reported
            state.reported = state.tracks.untracked.copy()
        return dict(counts)

    def _write_crops(self, state: _Camera) -> None:
        writes = state.tracks.crops_due(time.time())
        if writes and self.writer is not None:
            self.writer.submit(writes)

