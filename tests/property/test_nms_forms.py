"""The GPU's NMS form (whole-matrix passes) keeps exactly what the host's greedy loop keeps.

:func:`matrix_nms` is written against the array module of its inputs; run on NumPy here, it
is the very code the GPU runs on CuPy arrays (tests/gpu checks CuPy against NumPy).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dalistream.models.arrays import array_module, to_host
from dalistream.models.nms import batched_nms, matrix_nms


def _boxes(draw: st.DrawFn, count: int) -> np.ndarray:
    # Coarse coordinates and few sizes: many overlaps, chains of suppression and equal scores.
    pairs = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=count, max_size=count)
    xy = np.array(draw(pairs), dtype=np.float64).reshape(count, 2)
    sizes = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=count, max_size=count)
    wh = np.array(draw(sizes), dtype=np.float64).reshape(count, 2)
    return np.concatenate((xy, xy + wh), axis=1)


@st.composite
def candidates(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    count = draw(st.integers(0, 60))
    scores = np.array(draw(st.lists(st.sampled_from([0.5, 0.6, 0.7, 0.8, 0.9]), min_size=count, max_size=count)))
    groups = np.array(draw(st.lists(st.integers(0, 3), min_size=count, max_size=count)), dtype=np.int64)
    threshold = draw(st.sampled_from([0.0, 0.1, 0.3, 0.4, 0.5, 0.9, 1.0]))
    return _boxes(draw, count), scores.reshape(count), groups.reshape(count), threshold


@settings(max_examples=300, deadline=None)
@given(candidates())
def test_matrix_nms_keeps_what_the_greedy_loop_keeps(case: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
    boxes, scores, groups, threshold = case
    np.testing.assert_array_equal(matrix_nms(boxes, scores, groups, threshold), batched_nms(boxes, scores, groups, threshold))


def test_a_chain_of_suppressions_settles_exactly() -> None:
    # 0 suppresses 1, so 1 cannot suppress 2; 2 suppresses 3; and so on down a sliding chain.
    boxes = np.array([[x, 0.0, x + 10.0, 10.0] for x in range(0, 40, 3)])
    scores = np.linspace(1.0, 0.5, len(boxes))
    groups = np.zeros(len(boxes), np.int64)
    kept = matrix_nms(boxes, scores, groups, 0.5)
    np.testing.assert_array_equal(kept, batched_nms(boxes, scores, groups, 0.5))
    assert kept.tolist() == [0, 2, 4, 6, 8, 10, 12]


def test_host_arrays_stay_numpy() -> None:
    array = np.arange(3)
    assert array_module(array) is np
    assert to_host(array) is array
