"""The face tracker on plain boxes: crossings, fast faces, faces leaving and coming back, the
bounds, bad boxes, and (Hypothesis) its invariants on any input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dalistream.tracks.tracker import UNTRACKED, Tracker

FRAME = (1920, 1080)
STEP_S = 0.2  # 5 analysed frames a second


def face(x: float, y: float, height: float = 120.0) -> list[float]:
    """A face box centred at (x, y)."""
    width = 0.8 * height
    return [x - width / 2, y - height / 2, x + width / 2, y + height / 2]


def run(tracker: Tracker, frames: list[list[list[float]]], scores: float = 0.9) -> list[list[int]]:
    out = []
    for index, boxes in enumerate(frames):
        assignment = tracker.update(index * STEP_S, np.array(boxes, float).reshape(-1, 4), np.full(len(boxes), scores), FRAME)
        out.append(assignment.tracks.tolist())
    return out


def test_two_faces_crossing_keep_their_ids_while_one_hides_the_other():
    frames = []
    for i in range(30):
        a, b = face(200 + 60 * i, 500), face(1900 - 60 * i, 540)
        frames.append([b] if 12 <= i <= 15 else [a, b])  # a is behind b for 0.8 s: missed 1 s since last seen
    ids = run(Tracker(max_missed_s=1.0), frames)
    assert ids[0] == [1, 2]
    assert all(row == [2] for row in ids[12:16])
    assert all(row == [1, 2] for row in ids[16:]), ids


def test_the_face_seen_last_frame_keeps_its_detection_where_a_hidden_one_is_predicted():
    """One face walks down behind another that walked up and stopped: the hidden one's
    prediction lands on the stopped face's box more squarely than that face's own (its filter
    still expects it to move). The track matched last frame goes first, so no swap."""
    frames = []
    for i in range(22):
        behind, front = face(900, 200 + 40 * i), face(900, 1000 - 40 * min(i, 8))
        frames.append([front] if 10 <= i <= 13 else [behind, front])
    ids = run(Tracker(), frames)
    assert all(row == [2] for row in ids[10:14]), ids
    assert all(row == [1, 2] for row in [*ids[:10], *ids[14:]]), ids


def test_a_face_faster_than_its_own_width_per_frame_keeps_its_id():
    ids = run(Tracker(), [[face(100 + 130 * i, 400, height=100)] for i in range(14)])
    assert ids == [[1]] * 14


def test_at_two_analysed_frames_a_second_a_face_three_heights_a_frame_keeps_its_id():
    """How far a face may have moved grows with the time since the last frame."""
    tracker = Tracker()
    ids = [tracker.update(0.5 * i, np.array([face(100 + 300 * i, 400, height=100)]), np.array([0.9]), FRAME).tracks.tolist()
           for i in range(6)]
    assert ids == [[1]] * 6


def test_a_face_that_steps_out_of_the_frame_briefly_keeps_its_id_and_a_long_absence_does_not():
    right = [[face(1700 + 80 * i, 500)] for i in range(4)]  # walks out at the right
    back = [[face(1860 - 80 * i, 500)] for i in range(8)]  # and back in
    ids = run(Tracker(max_missed_s=1.0), [*right, [], [], *back])
    assert {track for row in ids for track in row} == {1}, ids
    ids = run(Tracker(max_missed_s=1.0), [*right, *[[]] * 8, *back])
    assert ids[-1] == [2]


def test_a_face_cut_by_the_frame_edge_as_it_leaves_is_found_again_when_it_comes_back():
    """Boxes cut to the frame shrink as a face leaves at the bottom: that is not the face
    shrinking, and its track, waiting at the edge, keeps the size it had."""

    def cut(y: float) -> list[float]:
        x1, y1, x2, y2 = face(900, y)
        return [x1, y1, x2, min(y2, FRAME[1])]

    frames = [*([cut(900 + 40 * i)] for i in range(6)), [], [], [], *([cut(1100 - 40 * i)] for i in range(6))]
    assert {track for row in run(Tracker(), frames) for track in row} == {1}


def test_a_track_ends_after_max_missed_s_and_its_id_is_never_used_again():
    tracker = Tracker(max_missed_s=0.5)
    assert tracker.update(0.0, np.array([face(500, 500)]), np.array([0.9])).tracks.tolist() == [1]
    assert tracker.update(0.4, np.empty((0, 4)), np.empty(0)).ended == []
    ended = tracker.update(0.6, np.array([face(500, 500)]), np.array([0.9]))
    assert ended.ended == [1] and ended.tracks.tolist() == [2] and ended.started == [2]
    assert tracker.end_all() == [2] and tracker.live == []
    assert tracker.update(5.0, np.array([face(500, 500)]), np.array([0.9])).tracks.tolist() == [3]


def test_weak_detections_continue_a_track_but_start_none():
    tracker = Tracker(min_score=0.6)
    assert tracker.update(0.0, np.array([face(500, 500), face(1200, 500)]), np.array([0.9, 0.55])).tracks.tolist() == [1, UNTRACKED]
    assert tracker.update(0.2, np.array([face(510, 500)]), np.array([0.52])).tracks.tolist() == [1]


def test_at_most_max_tracks_live_and_the_strongest_faces_win():
    tracker = Tracker(max_tracks=50)
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1900, size=(3000, 2))
    boxes = np.concatenate([centres, centres + 20], axis=1)
    scores = rng.uniform(0.6, 1.0, 3000)
    assignment = tracker.update(0.0, boxes, scores, FRAME)
    tracked = assignment.tracks != UNTRACKED
    assert tracked.sum() == 50 and assignment.limited == 2950 and len(tracker.live) == 50
    assert scores[tracked].min() >= scores[~tracked].max()


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [5, 5, 5.5, 5.5], [1920, 300, 1920, 400], [np.nan, 0, 10, 10],
                                 [0, 0, np.inf, 10], [50, 50, 10, 10]])
def test_boxes_without_area_or_numbers_are_not_tracked(box):
    assignment = Tracker().update(0.0, np.array([box, face(500, 500)], float), np.array([0.9, 0.9]), FRAME)
    assert assignment.tracks.tolist() == [UNTRACKED, 1] and assignment.invalid == 1


def test_time_going_backwards_counts_as_none_passing():
    tracker = Tracker(max_missed_s=1.0)
    tracker.update(10.0, np.array([face(500, 500)]), np.array([0.9]))
    assert tracker.update(3.0, np.array([face(505, 500)]), np.array([0.9])).tracks.tolist() == [1]


def test_ids_start_where_asked():
    assert Tracker(first_id=41).update(0.0, np.array([face(500, 500)]), np.array([0.9])).tracks.tolist() == [41]


finite = st.floats(-3000, 5000, allow_nan=False)
odd = st.one_of(finite, st.just(float("nan")), st.just(float("inf")), st.just(0.0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.5), hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.just(4)), elements=odd),
                          st.lists(st.floats(0, 1), min_size=12, max_size=12)), max_size=25),
       st.integers(1, 8))
def test_any_frames_keep_the_invariants(frames, max_tracks):
    """Whatever the boxes (garbage included): no exception, a track at most once per frame, at
    most ``max_tracks`` live, new ids above every id seen, ended ids never again."""
    tracker = Tracker(max_tracks=max_tracks)
    time, seen, ended = 0.0, set(), set()
    for step, boxes, scores in frames:
        time += step
        assignment = tracker.update(time, boxes, np.array(scores[: len(boxes)]), FRAME)
        ids = [track for track in assignment.tracks.tolist() if track != UNTRACKED]
        assert len(ids) == len(set(ids)) and len(tracker.live) <= max_tracks
        assert all(track > max(seen, default=0) for track in assignment.started)
        assert not set(ids) & ended
        ended |= set(assignment.ended)
        seen |= set(ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.4, 0.4), st.floats(-0.4, 0.4), st.floats(0.9, 1.1)), min_size=2, max_size=40),
       st.floats(40, 300))
def test_one_face_moving_less_than_half_its_height_per_frame_keeps_one_id(steps, height):
    x, y, frames = 960.0, 540.0, []
    for dx, dy, grow in steps:
        x, y = np.clip(x + dx * height, 200, 1700), np.clip(y + dy * height, 200, 880)
        height = float(np.clip(height * grow, 40, 300))
        frames.append([face(x, y, height)])
    assert {track for row in run(Tracker(), frames) for track in row} == {1}
