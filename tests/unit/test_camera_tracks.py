"""A camera's faces over time on plain inputs: the events, the clock, size changes, the bounds,
which picture is kept and when crops are written; the quality score and the crop box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from dalistream.tracks.faces import CROP_REFRESH_S, CameraTracks, Frame, crop_box
from dalistream.tracks.quality import potential, quality, sharpness

SIZE = (1920, 1080)
EPOCH = 1_790_000_000.0  # 2026-09-21 (UTC)


def landmarks(box: list[float], turn: float = 0.0) -> list[list[float]]:
    """Five points of a face in ``box``; ``turn`` (0 frontal, 1 profile) moves the nose to an eye."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    eye_l, eye_r = (x1 + 0.3 * w, y1 + 0.4 * h), (x1 + 0.7 * w, y1 + 0.4 * h)
    nose = (x1 + (0.5 + 0.2 * turn) * w, y1 + 0.6 * h)
    return [list(eye_l), list(eye_r), list(nose), [x1 + 0.35 * w, y1 + 0.8 * h], [x1 + 0.65 * w, y1 + 0.8 * h]]


def frame(t: float, boxes: list[list[float]], *, scores: list[float] | None = None, size=SIZE, pts: float | None = None,
          sharp: list[float] | None = None) -> Frame:
    return Frame(
        pts=t if pts is None else pts, received=t, wallclock=EPOCH + t, size=size,
        boxes=np.array(boxes, float).reshape(-1, 4), scores=np.array(scores or [0.9] * len(boxes)),
        landmarks=np.array([landmarks(box) for box in boxes], float).reshape(-1, 5, 2),
        sharpness=None if sharp is None else (lambda indices: np.array(sharp, float)[indices]),
    )


def box(x: float, y: float = 500.0, height: float = 120.0) -> list[float]:
    return [x, y, x + 0.8 * height, y + height]


def test_a_face_appears_is_tracked_and_leaves_with_its_summary():
    tracks = CameraTracks("lobby", max_missed_s=1.0)
    first = tracks.update(frame(10.0, [box(100)], scores=[0.8]))
    assert first.tracks == [1]
    (appeared,) = first.events
    assert appeared["event"] == "face_appeared" and appeared["camera"] == "lobby" and appeared["track"] == 1
    assert appeared["box"] == box(100) and appeared["score"] == 0.8 and appeared["pts"] == 10.0
    assert appeared["wallclock"] == "2026-09-21T14:13:30.000Z"
    for step in range(1, 6):
        assert tracks.update(frame(10.0 + 0.2 * step, [box(100 + 10 * step)], scores=[0.95])).tracks == [1]
    assert tracks.live == 1
    assert tracks.update(frame(12.0, [])).events == []  # missed 1.0 s: not yet gone
    (left,) = tracks.update(frame(12.4, [])).events
    assert left["event"] == "face_left" and left["track"] == 1 and left["reason"] == "missed"
    assert (left["first"], left["last"]) == ("2026-09-21T14:13:30.000Z", "2026-09-21T14:13:31.000Z")
    assert left["duration_s"] == 1.0 and left["frames"] == 6 and left["score"] == 0.95 and left["crop"] is None
    assert tracks.live == 0 and tracks.next_id == 2
    assert [view["state"] for view in tracks.views()] == ["ended"]


def test_a_new_picture_size_ends_every_track():
    tracks = CameraTracks("c")
    tracks.update(frame(0.0, [box(100), box(900)]))
    changed = tracks.update(frame(0.2, [box(50)], size=(1280, 720)))
    assert [(e["event"], e["track"], e.get("reason")) for e in changed.events] == [
        ("face_left", 1, "size_changed"), ("face_left", 2, "size_changed"), ("face_appeared", 3, None)]
    assert changed.tracks == [3]


@pytest.mark.parametrize("jump", [-3600.0, -0.5, 7200.0])
def test_a_pts_jump_is_bridged_by_arrival_time(jump):
    """A camera's clock jumping back or far ahead (a restart, a new session) is no time for the
    tracks: the frames' arrivals say how long passed."""
    tracks = CameraTracks("c", max_missed_s=1.0)
    tracks.update(frame(5.0, [box(100)]))
    after = tracks.update(Frame(5.0 + jump, 5.2, EPOCH + 5.2, SIZE, np.array([box(105)], float), np.array([0.9]),
                                np.array([landmarks(box(105))])))
    assert after.tracks == [1] and after.events == []
    later = tracks.update(Frame(5.2 + jump, 5.4, EPOCH + 5.4, SIZE, np.array([box(110)], float), np.array([0.9]),
                                np.array([landmarks(box(110))])))
    assert later.tracks == [1]
    gone = tracks.update(Frame(-50.0, 9.0, EPOCH + 9.0, SIZE, np.empty((0, 4)), np.empty(0), np.empty((0, 5, 2))))
    assert [e["reason"] for e in gone.events] == ["missed"]  # 3.6 s of arrivals later


def test_end_gives_every_live_face_its_reason_and_ids_go_on():
    tracks = CameraTracks("c", first_id=70)
    tracks.update(frame(0.0, [box(100), box(900)]))
    events = tracks.end("moved", EPOCH + 1)
    assert [(e["track"], e["reason"]) for e in events] == [(70, "moved"), (71, "moved")]
    assert tracks.update(frame(5.0, [box(100)])).tracks == [72]


def test_beyond_max_per_camera_faces_are_counted_not_tracked():
    tracks = CameraTracks("c", max_tracks=2)
    update = tracks.update(frame(0.0, [box(100), box(400), box(700), [5, 5, 5, 90]], scores=[0.7, 0.9, 0.8, 0.9]))
    assert update.tracks == [None, 1, 2, None]
    assert tracks.untracked == {"max_per_camera": 1, "invalid_box": 1}


def test_the_best_picture_is_asked_for_and_written_first_at_once_then_at_most_every_few_seconds():
    tracks = CameraTracks("cam 1", crops=True)
    assert tracks.update(frame(0.0, [box(100)], sharp=[50.0])).improved == [(0, 1)]
    tracks.keep_crop(1, "pixels-1")
    (write,) = tracks.crops_due(EPOCH)
    assert (write.path, write.pixels, write.track) == ("faces/cam 1/2026-09-21/1.jpg", "pixels-1", 1)
    assert tracks.update(frame(0.2, [box(105)], sharp=[10.0])).improved == []  # blurrier: not better
    assert tracks.update(frame(0.4, [box(110)], sharp=[500.0])).improved == [(0, 1)]
    tracks.keep_crop(1, "pixels-2")
    assert tracks.crops_due(EPOCH + 1.0) == []  # written a second ago
    assert [w.pixels for w in tracks.crops_due(EPOCH + CROP_REFRESH_S)] == ["pixels-2"]
    assert tracks.crops_due(EPOCH + 2 * CROP_REFRESH_S) == []  # nothing better since
    tracks.update(frame(0.6, [box(112)], sharp=[900.0]))
    tracks.keep_crop(1, "pixels-3")
    (left,) = tracks.end("camera_stopped", EPOCH + 2)
    assert left["crop"] == "faces/cam 1/2026-09-21/1.jpg"
    assert [w.pixels for w in tracks.crops_due(EPOCH + 2)] == ["pixels-3"]  # its last best, at once
    assert tracks.views()[0]["crop"] == "faces/cam 1/2026-09-21/1.jpg" and tracks.views()[0]["crop_at"] is not None


def test_without_crops_nothing_is_scored_or_cut():
    tracks = CameraTracks("c", crops=False)
    assert tracks.update(frame(0.0, [box(100)], sharp=[50.0])).improved == []
    assert tracks.crops_due(EPOCH) == []


def test_quality_prefers_large_frontal_sharp_whole_faces():
    big, small = box(500, height=150), box(500, height=40)
    turned = landmarks(big, turn=1.0)
    edge = [0.0, 500.0, 120.0, 650.0]

    def q(boxes, marks, sharp, score=0.9):
        return quality(potential(np.full(len(boxes), score), np.array(boxes), np.array(marks), SIZE, 0.25), np.array(sharp))

    frontal = q([big], [landmarks(big)], [300.0])[0]
    assert frontal > q([small], [landmarks(small)], [300.0])[0]
    assert frontal > q([big], [turned], [300.0])[0]
    assert frontal > q([big], [landmarks(big)], [5.0])[0]
    assert frontal > q([edge], [landmarks(edge)], [300.0])[0]
    assert 0.0 < frontal <= 1.0
    assert q([big], [[[np.nan, 0]] * 5], [300.0])[0] == 0.0  # garbage scores nothing, raises nothing


def test_sharpness_falls_with_blur_and_ignores_tiny_boxes():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    blurred = uniform_filter(sharp, size=(9, 9, 1))
    boxes = np.array([[0.0, 0.0, 400.0, 400.0], [10.0, 10.0, 12.0, 12.0]])
    crisp, tiny = sharpness(sharp, boxes, (0.5, 0.5))
    assert crisp > 10 * sharpness(blurred, boxes[:1], (0.5, 0.5))[0] and tiny == 0.0


@pytest.mark.parametrize(("box", "expected"), [
    ([100.0, 100.0, 200.0, 300.0], (75, 50, 225, 350)),
    ([0.0, 0.0, 50.0, 50.0], (0, 0, 63, 63)),
    ([1900.0, 1000.0, 1920.0, 1080.0], (1895, 980, 1920, 1080)),
    ([1920.0, 1080.0, 1920.0, 1080.0], (1919, 1079, 1920, 1080)),
])
def test_crop_box_adds_the_margin_within_the_frame(box, expected):
    assert crop_box(box, 0.25, SIZE) == expected
