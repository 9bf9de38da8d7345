"""The GPU's NMS form (a fixed number of whole-matrix passes) keeps exactly what the host's
greedy loop keeps, and says when its passes did not settle.

:func:`fixed_nms` is written against the array module of its inputs; run on NumPy here, it is
the very code the GPU runs on CuPy arrays (tests/gpu checks CuPy against NumPy).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dalistream.models.nms import batched_nms, fixed_nms, nms


def _boxes(draw: st.DrawFn, count: int) -> np.ndarray:
    # Coarse coordinates and few sizes: many overlaps, chains of suppression and equal scores.
    pairs = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=count, max_size=count)
    xy = np.array(draw(pairs), dtype=np.float64).reshape(count, 2)
    sizes = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=count, max_size=count)
    wh = np.array(draw(sizes), dtype=np.float64).reshape(count, 2)
    return np.concatenate((xy, xy + wh), axis=1)


@st.composite
def images(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    """Up to four images of up to 30 candidates each, in rank order, some slots not candidates."""
    count = draw(st.integers(1, 30))
    boxes = np.stack([_boxes(draw, count) for _ in range(draw(st.integers(1, 4)))])
    valid = np.array(draw(st.lists(st.booleans(), min_size=boxes.size // 4, max_size=boxes.size // 4))).reshape(boxes.shape[:2])
    return boxes, valid, draw(st.sampled_from([0.0, 0.1, 0.3, 0.4, 0.5, 0.9, 1.0]))


def greedy(boxes: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """The host loop's choice per image, as a keep mask over the rank-ordered slots."""
    keep = np.zeros(valid.shape, bool)
    for image in range(len(boxes)):
        slots = np.flatnonzero(valid[image])
        scores = np.linspace(1.0, 0.5, len(slots))  # rank order = score order
        keep[image, slots[nms(boxes[image, slots], scores, threshold)]] = True
    return keep


@settings(max_examples=300, deadline=None)
@given(images())
def test_settled_passes_keep_what_the_greedy_loop_keeps(case: tuple[np.ndarray, np.ndarray, float]) -> None:
    boxes, valid, threshold = case
    keep, settled = fixed_nms(boxes, valid, threshold, passes=boxes.shape[1])  # as many passes as ranks: always settles
    assert settled.all()
    np.testing.assert_array_equal(keep, greedy(boxes, valid, threshold))
    few, settled_few = fixed_nms(boxes, valid, threshold, passes=2)
    for image in np.flatnonzero(settled_few):  # settled after two passes: the same choice
        np.testing.assert_array_equal(few[image], keep[image])


def test_a_chain_longer_than_the_passes_is_not_settled() -> None:
    # 0 suppresses 1, so 1 cannot suppress 2; 2 suppresses 3; and so on down a sliding chain.
    boxes = np.array([[[x, 0.0, x + 10.0, 10.0] for x in range(0, 40, 3)]])
    valid = np.ones(boxes.shape[:2], bool)
    keep, settled = fixed_nms(boxes, valid, 0.5, passes=3)
    assert not settled.any()
    keep, settled = fixed_nms(boxes, valid, 0.5, passes=14)
    assert settled.all() and np.flatnonzero(keep[0]).tolist() == [0, 2, 4, 6, 8, 10, 12]
    scores = np.linspace(1.0, 0.5, boxes.shape[1])
    assert batched_nms(boxes[0], scores, np.zeros(boxes.shape[1], np.int64), 0.5).tolist() == [0, 2, 4, 6, 8, 10, 12]


def test_slots_that_are_no_candidates_suppress_nothing() -> None:
    boxes = np.array([[[0.0, 0.0, 10.0, 10.0]] * 3])
    keep, settled = fixed_nms(boxes, np.array([[False, True, True]]), 0.5, passes=2)
    assert settled.all() and keep.tolist() == [[False, True, False]]
