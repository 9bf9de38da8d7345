"""One camera's face tracker: which detection in this frame is which face of the frames before.

ByteTrack's association (Zhang et al., 2022) on a constant-velocity Kalman filter, timed in
seconds rather than frames (cameras are sampled at ``detect_fps``, lowered when idle, and drop
frames under load), with one assignment solver, SciPy's ``linear_sum_assignment``:

1. every track's box is predicted to the frame's time;
2. detections scoring at least ``min_score`` are matched (IoU on the predicted boxes, at least
   ``min_iou``) first to the tracks matched in the previous frame, then to the tracks missed
   lately (so at a crossing, the face seen last frame keeps its detection and the one behind it
   coasts on its own motion rather than taking it);
3. the weaker detections may only continue a track left unmatched, never start one (ByteTrack's
   second association: a face half hidden scores low but is still the face it was);
4. a strong detection still unmatched may continue a track seen in the previous frame whose
   predicted box it misses but whose size it has, as far from it as a face moves in the time
   since (:data:`NEAR_SPEED`, 2 to 5 face heights): a face that moved more than its own width
   between two analysed frames (fast, or a low ``detect_fps``) before the filter knew its
   velocity;
5. each unmatched strong detection starts a track, the strongest first, while fewer than
   ``max_tracks`` are live; beyond that it is counted in :attr:`Assignment.limited`;
6. a track not matched for more than ``max_missed_s`` has ended.

A track whose predicted centre leaves the frame stops there (its velocity is zeroed), and a
coasting track keeps its size: a face that walks out and back in within ``max_missed_s`` is
matched again where it left. Pure: the caller gives the time, boxes and scores, and gets ids
back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy.optimize import linear_sum_assignment

from dalistream.geometry import iou_matrix

UNTRACKED = -1
TIME_EPSILON_S = 1e-6  # sums of frame intervals land a hair off (0.2 * 5 = 1.0000000000000002)
MIN_SIDE_PX = 1.0  # a box narrower or lower than this (e.g. cut to nothing at the frame's edge) is not tracked

# Noise of the constant-velocity model, in face heights (the box's height) so one model suits near
# and far faces: measured boxes jitter by about 5 % of the face between frames; a walking face's
# velocity changes by about a face height per second each second.
MEASUREMENT_STD = 0.05  # face heights
POSITION_STD = 0.05  # face heights per sqrt(second)
VELOCITY_STD = 1.0  # face heights per second per sqrt(second)
INITIAL_VELOCITY_STD = 2.0  # face heights per second: a new face may be walking past
NEAR_SPEED = 10.0  # face heights per second: a track seen last frame takes an unmatched box of its size that close...
NEAR_HEIGHTS = (2.0, 5.0)  # ... but never farther than the second nor nearer than the first (face heights)
NEAR_SIZE_RATIO = 1.5  # ... whose height is within this factor of the track's


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one :meth:`Tracker.update` decided."""

    tracks: np.ndarray
    """``(K,)`` int64: each detection's track id, or :data:`UNTRACKED`."""
    started: list[int] = field(default_factory=list)
    """Tracks started in this frame (ids ascending)."""
    ended: list[int] = field(default_factory=list)
    """Tracks that ended before this frame: missed for more than ``max_missed_s``."""
    limited: int = 0
    """Strong detections that would have started a track beyond ``max_tracks``."""
    invalid: int = 0
    """Detections with a box of no area or not finite numbers: never tracked."""


class Tracker:
    """See the module docstring. Ids start at ``first_id`` and are never reused."""

    def __init__(
        self,
        *,
        max_missed_s: float = 1.0,
        max_tracks: int = 200,
        min_score: float = 0.6,
        min_iou: float = 0.1,
        first_id: int = 1,
    ) -> None:
        if not max_missed_s > 0 or max_tracks < 1 or not 0 < min_iou <= 1:
            raise ValueError("max_missed_s must be > 0, max_tracks >= 1 and min_iou in (0, 1]")
        self.max_missed_s = max_missed_s
        self.max_tracks = max_tracks
        self.min_score = min_score
        self.min_iou = min_iou
        self.next_id = first_id
        self._time: float | None = None
        self._ids = np.empty(0, np.int64)
        self._state = np.empty((0, 8))  # cx, cy, w, h and their velocities per second
        self._covariance = np.empty((0, 8, 8))
        self._last_seen = np.empty(0)  # time of each track's last match
        self._fresh = np.empty(0, bool)  # matched in the previous update

    @property
    def live(self) -> list[int]:
        """Ids of the tracks not ended, oldest first."""
        return self._ids.tolist()

    def boxes(self) -> np.ndarray:
        """``(N, 4)`` each live track's box (``x1, y1, x2, y2``) as last estimated, in :attr:`live` order."""
        return _corners(self._state[:, :4])

    def update(self, time: float, boxes: np.ndarray, scores: np.ndarray, frame: tuple[int, int] | None = None) -> Assignment:
        """Assign this frame's detections (``boxes`` ``(K, 4)`` ``x1, y1, x2, y2``; ``scores``
        ``(K,)``) at ``time`` seconds (never before the previous update's; an earlier time counts
        as no time passed). ``frame`` (width, height): where a track may move to."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        elapsed = 0.0 if self._time is None else max(0.0, time - self._time)
        self._time = time if self._time is None else max(time, self._time)
        ended = self._expire()
        self._predict(elapsed, frame)
        with np.errstate(invalid="ignore"):  # inf - inf: not finite, refused just below
            valid = (
                np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
                & (boxes[:, 2] - boxes[:, 0] >= MIN_SIDE_PX) & (boxes[:, 3] - boxes[:, 1] >= MIN_SIDE_PX)
            )
        assigned = np.full(len(boxes), UNTRACKED, np.int64)
        matched = np.zeros(len(self._ids), bool)
        pairs: list[tuple[int, int]] = []  # (track row, detection index)
        strong = np.flatnonzero(valid & (scores >= self.min_score))
        weak = np.flatnonzero(valid & (scores < self.min_score))
        predicted = _corners(self._state[:, :4])
        if frame is not None:
            predicted = _clip(predicted, frame)
        for detections, tracks, similarity in (
            (strong, np.flatnonzero(self._fresh), self._overlap),
            (strong, np.flatnonzero(~self._fresh), self._overlap),
            (weak, np.arange(len(self._ids)), self._overlap),
            (strong, np.flatnonzero(self._fresh), partial(_nearness, reach=np.clip(NEAR_SPEED * elapsed, *NEAR_HEIGHTS))),
        ):
            detections = detections[assigned[detections] == UNTRACKED]
            tracks = tracks[~matched[tracks]]
            if not len(detections) or not len(tracks):
                continue
            for track, detection in _associate(similarity(predicted[tracks], boxes[detections])):
                assigned[detections[detection]] = self._ids[tracks[track]]
                matched[tracks[track]] = True
                pairs.append((tracks[track], detections[detection]))
        if pairs:
            rows, columns = map(list, zip(*pairs))
            self._correct(np.array(rows), boxes[columns])
        self._fresh = matched
        self._last_seen[matched] = self._time
        spare = strong[assigned[strong] == UNTRACKED]
        spare = spare[np.argsort(-scores[spare], kind="stable")]
        room = max(0, self.max_tracks - len(self._ids))
        started = self._start(boxes[spare[:room]])
        assigned[spare[:room]] = started
        return Assignment(assigned, started, ended, limited=max(0, len(spare) - room), invalid=int((~valid).sum()))

    def end_all(self) -> list[int]:
        """End every live track (the camera stopped, its picture changed size); returns their ids.
        The next id is kept: ids are never reused."""
        ended = self.live
        self._keep(np.zeros(len(self._ids), bool))
        self._time = None
        return ended

    def _expire(self) -> list[int]:
        gone = self._time - self._last_seen > self.max_missed_s + TIME_EPSILON_S
        ended = self._ids[gone].tolist()
        if ended:
            self._keep(~gone)
        return ended

    def _keep(self, keep: np.ndarray) -> None:
        self._ids, self._state, self._covariance = self._ids[keep], self._state[keep], self._covariance[keep]
        self._last_seen, self._fresh = self._last_seen[keep], self._fresh[keep]

    def _predict(self, elapsed: float, frame: tuple[int, int] | None) -> None:
        if not len(self._ids) or elapsed <= 0:
            return
        # A coasting track keeps its size (as ByteTrack's do), and so does one at the frame's
        # edge: the detector's box shrinks there as the edge cuts the face, not because the face
        # does, and would shrink on to nothing while the face is away.
        constant = ~self._fresh
        if frame is not None:
            box = _corners(self._state[:, :4])
            constant |= (box[:, 0] <= 0) | (box[:, 1] <= 0) | (box[:, 2] >= frame[0]) | (box[:, 3] >= frame[1])
        self._state[constant, 6:] = 0.0
        motion = np.eye(8)
        motion[range(4), range(4, 8)] = elapsed
        height = np.maximum(self._state[:, 3], MIN_SIDE_PX)
        noise = np.concatenate([np.repeat((POSITION_STD * height)[:, None] ** 2, 4, axis=1),
                                np.repeat((VELOCITY_STD * height)[:, None] ** 2, 4, axis=1)], axis=1) * elapsed
        self._state = self._state @ motion.T
        self._covariance = motion @ self._covariance @ motion.T + noise[:, :, None] * np.eye(8)
        if frame is not None:
            width, height_px = frame
            outside = (self._state[:, 0] < 0) | (self._state[:, 0] > width) | (self._state[:, 1] < 0) | (self._state[:, 1] > height_px)
            self._state[outside, 4:] = 0.0
            self._state[:, 0] = np.clip(self._state[:, 0], 0, width)
            self._state[:, 1] = np.clip(self._state[:, 1], 0, height_px)

    def _overlap(self, predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """IoU, 0 where below ``min_iou`` (no match)."""
        overlap = iou_matrix(predicted, boxes)
        return np.where(overlap >= self.min_iou, overlap, 0.0)

    def _correct(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """The Kalman update of the tracks in ``rows``, each with its matched box."""
        state, covariance = self._state[rows], self._covariance[rows]
        measured = _centres(boxes)
        noise = (MEASUREMENT_STD * np.maximum(measured[:, 3], MIN_SIDE_PX)) ** 2
        innovation = covariance[:, :4, :4] + noise[:, None, None] * np.eye(4)
        gain = np.linalg.solve(innovation, covariance[:, :4, :]).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
        self._state[rows] = state + np.einsum("nij,nj->ni", gain, measured - state[:, :4])
        self._covariance[rows] = covariance - gain @ covariance[:, :4, :]

    def _start(self, boxes: np.ndarray) -> list[int]:
        ids = list(range(self.next_id, self.next_id + len(boxes)))
        if not ids:
            return ids
        self.next_id += len(ids)
        measured = _centres(boxes)
        height = np.maximum(measured[:, 3], MIN_SIDE_PX)
        spread = np.concatenate([np.repeat((2 * MEASUREMENT_STD * height)[:, None], 4, axis=1),
                                 np.repeat((INITIAL_VELOCITY_STD * height)[:, None], 4, axis=1)], axis=1)
        self._ids = np.concatenate([self._ids, ids])
        self._state = np.concatenate([self._state, np.concatenate([measured, np.zeros_like(measured)], axis=1)])
        self._covariance = np.concatenate([self._covariance, spread[:, :, None] ** 2 * np.eye(8)])
        self._last_seen = np.concatenate([self._last_seen, np.full(len(ids), self._time)])
        self._fresh = np.concatenate([self._fresh, np.ones(len(ids), bool)])
        return ids


def _associate(similarity: np.ndarray) -> list[tuple[int, int]]:
    """(track row, detection row) pairs of the assignment with the most similarity; 0 is no match."""
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return [(row, col) for row, col in zip(rows.tolist(), cols.tolist()) if similarity[row, col] > 0]


def _nearness(predicted: np.ndarray, boxes: np.ndarray, reach: float) -> np.ndarray:
    """For a face faster than IoU can follow (it moved more than its own width since the last
    frame, e.g. at a low ``detect_fps``): 1 at the predicted centre falling to 0 at ``reach``
    face heights from it, for a box of about the same size, else 0."""
    track, detection = _centres(predicted), _centres(boxes)
    height = np.maximum(track[:, None, 3], MIN_SIDE_PX)
    distance = np.hypot(track[:, None, 0] - detection[None, :, 0], track[:, None, 1] - detection[None, :, 1])
    ratio = detection[None, :, 3] / height
    alike = (ratio >= 1 / NEAR_SIZE_RATIO) & (ratio <= NEAR_SIZE_RATIO)
    return np.where(alike, np.clip(1.0 - distance / (reach * height), 0.0, None), 0.0)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def _corners(centres: np.ndarray) -> np.ndarray:
    half = np.abs(centres[:, 2:4]) / 2
    return np.concatenate([centres[:, :2] - half, centres[:, :2] + half], axis=1)


def _clip(boxes: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    width, height = frame
    return np.stack([np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height),
                     np.clip(boxes[:, 2], 0, width), np.clip(boxes[:, 3], 0, height)], axis=1)
