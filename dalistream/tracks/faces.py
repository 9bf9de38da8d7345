"""One camera's faces over time: track ids for its detections, ``face_appeared`` / ``face_left``
events, and which picture of each face to keep.

:class:`CameraTracks` is fed each analysed frame's faces in order. It runs the camera's
:class:`~dalistream.tracks.tracker.Tracker` on a clock of its own, built from the frames'
``pts``: a step backwards or of more than :data:`CLOCK_JUMP_S` (a camera restarting its clock, a
new session) is taken as the time between the frames' arrivals instead. A frame of another size
than the one before ends every live track (``reason: "size_changed"``): their boxes mean
nothing in the new picture.

With crops on, each tracked face's picture is scored (:mod:`~dalistream.tracks.quality`; its
sharpness, read from pixels, only where the rest could beat the track's best); when a track's
best improves, :meth:`CameraTracks.update` names the face so the caller cuts its crop at
full resolution and hands the pixels back (:meth:`CameraTracks.keep_crop`).
:meth:`CameraTracks.crops_due` then says which crops to write: a track's first at once, a
better one at most every :data:`CROP_REFRESH_S` while it lives, and its last best when it ends.
A crop goes to ``faces/<camera>/<UTC date of the track's start>/<track>.jpg`` under the output
directory, the path ``face_left`` names.

Pure: no clocks, threads or files of its own. One caller at a time.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from dalistream import records
from dalistream.tracks.quality import potential, quality
from dalistream.tracks.tracker import UNTRACKED, Tracker

CLOCK_JUMP_S = 10.0  # a pts step longer than this (or backwards) is a clock jump, not time passing
CROP_REFRESH_S = 5.0  # a live track's crop file is rewritten with a better picture at most this often
RECENT_TRACKS = 50  # ended tracks kept for the faces endpoint


@dataclass(frozen=True, slots=True)
class Frame:
    """One analysed frame's faces, as :meth:`CameraTracks.update` takes them."""

    pts: float
    received: float  # monotonic seconds of its arrival
    wallclock: float  # seconds since the epoch of its arrival
    size: tuple[int, int]
    boxes: np.ndarray  # (K, 4) source pixels
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray  # (K, 5, 2)
    sharpness: Callable[[list[int]], np.ndarray] | None = None  # with crops on: of the faces at these indices


@dataclass(slots=True)
class Track:
    """One face's track: what the events and the faces endpoint say of it."""

    id: int
    first_wallclock: float
    first_pts: float
    first_time: float  # on the camera's tracking clock
    box: list[float]
    last_wallclock: float = 0.0
    last_pts: float = 0.0
    last_time: float = 0.0
    frames: int = 0
    score: float = 0.0  # best detection score
    quality: float = -1.0  # of the best picture so far (-1: none scored)
    crop: Any = None  # the best picture's pixels, until written
    crop_path: str | None = None  # where its crop is written (set once the first is due)
    written_at: float | None = None  # wallclock of the last crop written
    ended: str | None = None  # the reason, once ended

    def view(self) -> dict[str, Any]:
        """The track as the faces endpoint shows it."""
        return {
            "track": self.id,
            "state": "live" if self.ended is None else "ended",
            "first": records.iso_utc(self.first_wallclock),
            "last": records.iso_utc(self.last_wallclock),
            "duration_s": round(self.last_time - self.first_time, 3),
            "frames": self.frames,
            "score": round(self.score, 4),
            "box": self.box,
            "crop": self.crop_path,
            "crop_at": None if self.written_at is None else records.iso_utc(self.written_at),
            **({} if self.ended is None else {"reason": self.ended}),
        }


@dataclass(frozen=True, slots=True)
class Update:
    """What one frame did to the camera's tracks."""

    tracks: list[int | None]  # each face's track id (None: not tracked)
    events: list[dict[str, Any]]  # face_left (tracks that ended before this frame), then face_appeared
    improved: list[tuple[int, int]] = field(default_factory=list)  # (face index, track id): cut this face's crop


@dataclass(frozen=True, slots=True)
class CropWrite:
    """A crop to write: ``pixels`` (whatever the caller kept) to ``path`` (relative to the output directory)."""

    path: str
    pixels: Any
    camera: str
    track: int


class CameraTracks:
    """One camera's tracks (see the module docstring); track ids start at ``first_id``; ``margin``:
    the crops', a share of the face box on each side."""

    def __init__(
        self,
        camera: str,
        *,
        max_missed_s: float = 1.0,
        max_tracks: int = 200,
        min_score: float = 0.6,
        crops: bool = False,
        margin: float = 0.25,
        first_id: int = 1,
    ) -> None:
        self.camera = camera
        self.crops = crops
        self.margin = margin
        self._tracker = Tracker(max_missed_s=max_missed_s, max_tracks=max_tracks, min_score=min_score, first_id=first_id)
        self._live: dict[int, Track] = {}
        self._ended: deque[Track] = deque(maxlen=RECENT_TRACKS)
        self._unwritten: list[Track] = []  # ended with a crop not yet written
        self._size: tuple[int, int] | None = None
        self._time = 0.0
        self._last: tuple[float, float] | None = None  # (pts, received) of the last frame
        self.untracked: Counter[str] = Counter()  # faces not tracked, by reason: max_per_camera, invalid_box

    @property
    def next_id(self) -> int:
        """The id the next track gets (a camera moved to another worker continues from it)."""
        return self._tracker.next_id

    @property
    def live(self) -> int:
        """Tracks in view now."""
        return len(self._live)

    def update(self, frame: Frame) -> Update:
        """Track ``frame``'s faces; see :class:`Update`."""
        events = []
        if self._size is not None and frame.size != self._size:
            events += self._end_all("size_changed", frame.wallclock)
        self._size = frame.size
        time = self._clock(frame.pts, frame.received)
        assignment = self._tracker.update(time, frame.boxes, frame.scores, frame.size)
        self.untracked["max_per_camera"] += assignment.limited
        self.untracked["invalid_box"] += assignment.invalid
        for track_id in assignment.ended:
            events.append(self._end(self._live.pop(track_id), "missed", frame.wallclock))
        boxes = np.round(np.asarray(frame.boxes, np.float64).reshape(-1, 4), 1).tolist()
        started = set(assignment.started)
        bound = None
        if self.crops and frame.sharpness is not None:
            bound = potential(frame.scores, frame.boxes, frame.landmarks, frame.size, self.margin)
        tracks: list[int | None] = []
        candidates: list[tuple[int, Track]] = []  # faces that may be their track's best picture yet
        for index, track_id in enumerate(assignment.tracks.tolist()):
            if track_id == UNTRACKED:
                tracks.append(None)
                continue
            tracks.append(track_id)
            score = float(frame.scores[index])
            if track_id in started:
                self._live[track_id] = Track(track_id, frame.wallclock, frame.pts, time, boxes[index])
                events.append(records.event(camera=self.camera, event="face_appeared", wallclock=frame.wallclock,
                                            track=track_id, box=boxes[index], score=round(score, 4), pts=round(frame.pts, 6)))
            track = self._live[track_id]
            track.box, track.frames = boxes[index], track.frames + 1
            track.last_wallclock, track.last_pts, track.last_time = frame.wallclock, frame.pts, time
            track.score = max(track.score, score)
            if bound is not None and bound[index] > track.quality:
                candidates.append((index, track))
        improved = []
        if candidates:
            indices = [index for index, _ in candidates]
            for (index, track), value in zip(candidates, quality(bound[indices], frame.sharpness(indices)).tolist()):
                if value > track.quality:
                    track.quality = value
                    improved.append((index, track.id))
        return Update(tracks, events, improved)

    def keep_crop(self, track_id: int, pixels: Any) -> None:
        """The crop cut for a face :meth:`update` named as its track's best so far."""
        track = self._live.get(track_id)
        if track is not None:
            track.crop = pixels

    def crops_due(self, now: float) -> list[CropWrite]:
        """The crops to write now (``now``: seconds since the epoch); each is handed out once."""
        due = [track for track in self._live.values()
               if track.crop is not None and (track.written_at is None or now - track.written_at >= CROP_REFRESH_S)]
        due += self._unwritten
        self._unwritten = []
        writes = []
        for track in due:
            if track.crop is None:
                continue
            track.crop_path = track.crop_path or self.crop_path(track)
            writes.append(CropWrite(track.crop_path, track.crop, self.camera, track.id))
            track.crop, track.written_at = None, now
        return writes

    def end(self, reason: str, wallclock: float) -> list[dict[str, Any]]:
        """End every live track for ``reason`` (``camera_stopped``, ``service_stopped``, ``moved``,
        ``missed``): their ``face_left`` events. Ids go on from where they were."""
        return self._end_all(reason, wallclock)

    def views(self) -> list[dict[str, Any]]:
        """Live and recently ended tracks, the latest to start first."""
        tracks = sorted([*self._live.values(), *self._ended], key=lambda track: track.id, reverse=True)
        return [track.view() for track in tracks]

    def crop_path(self, track: Track) -> str:
        """Where ``track``'s crop goes, relative to the output directory."""
        day = datetime.fromtimestamp(track.first_wallclock, UTC).strftime("%Y-%m-%d")
        return f"faces/{self.camera}/{day}/{track.id}.jpg"

    def _end_all(self, reason: str, wallclock: float) -> list[dict[str, Any]]:
        self._tracker.end_all()
        ended, self._live = list(self._live.values()), {}
        return [self._end(track, reason, wallclock) for track in ended]

    def _end(self, track: Track, reason: str, wallclock: float) -> dict[str, Any]:
        track.ended = reason
        self._ended.append(track)
        if track.crop is not None:
            track.crop_path = track.crop_path or self.crop_path(track)
            self._unwritten.append(track)
        return records.event(
            camera=self.camera, event="face_left", wallclock=wallclock, track=track.id, reason=reason,
            first=records.iso_utc(track.first_wallclock), last=records.iso_utc(track.last_wallclock),
            duration_s=round(track.last_time - track.first_time, 3), frames=track.frames,
            score=round(track.score, 4), crop=track.crop_path,
        )

    def _clock(self, pts: float, received: float) -> float:
        """The tracking clock at a frame shown at ``pts`` that arrived at ``received``."""
        if self._last is not None:
            last_pts, last_received = self._last
            step = pts - last_pts
            if not 0.0 <= step <= CLOCK_JUMP_S:
                step = max(0.0, received - last_received)
            self._time += step
        self._last = (pts, received)
        return self._time


def crop_box(box: list[float], margin: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (source pixels) widened by ``margin`` of its width and height on each side, in
    whole pixels and cut to the frame of ``size`` (at least one pixel)."""
    x1, y1, x2, y2 = box
    width, height = size
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left = min(max(0, int(np.floor(x1 - dx))), width - 1)
    top = min(max(0, int(np.floor(y1 - dy))), height - 1)
    right = max(min(width, int(np.ceil(x2 + dx))), left + 1)
    bottom = max(min(height, int(np.ceil(y2 + dy))), top + 1)
    return left, top, right, bottom
