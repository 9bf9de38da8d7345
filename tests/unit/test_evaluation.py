"""WIDER FACE protocol: hand-built cases with known AP, and random cases against a loop port."""

from __future__ import annotations

import numpy as np
import pytest

from dalistream.tools.evaluation import (
    Detections,
    GroundTruthError,
    ImageTruth,
    evaluate,
    parse_ground_truth,
    pr_curve,
    voc_ap,
    wider_iou,
)

GT_TEXT = """\
e/a.jpg 100 80
3
10 10 20 20 1 1 1
50 10 20 20 0 1 1
10 50 8 8 0 0 1
e/b.jpg 64 64
0
"""

FAR = [90.0, 70.0, 99.0, 79.0]  # a box overlapping no face


def image(name: str, boxes: list[list[float]], keep: list[tuple[int, int, int]]) -> ImageTruth:
    return ImageTruth(name, 200, 200, np.array(boxes, float).reshape(-1, 4), np.array(keep, bool).reshape(-1, 3))


def dets(boxes: list[list[float]], scores: list[float]) -> Detections:
    return Detections(np.array(boxes, float).reshape(-1, 4), np.array(scores, float))


def test_parse_ground_truth() -> None:
    a, b = parse_ground_truth(GT_TEXT)
    assert (a.name, a.width, a.height, b.name) == ("e/a.jpg", 100, 80, "e/b.jpg")
    np.testing.assert_array_equal(a.boxes[1], [50, 10, 70, 30])  # x, y, w, h → x1, y1, x2, y2
    np.testing.assert_array_equal(a.keep, [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    assert b.boxes.shape == (0, 4) and b.keep.shape == (0, 3)


@pytest.mark.parametrize(
    ("text", "line"),
    [("e/a.jpg 10 10\n2\n1 1 2 2 1 1 1\n", "line 4"), ("e/a.jpg 10 10\n1\n1 1 2 2 1 1\n", "line 3"), ("e/a.jpg 10\n", "line 1")],
)
def test_malformed_ground_truth_names_the_line(text: str, line: str) -> None:
    with pytest.raises(GroundTruthError, match=line):
        parse_ground_truth(text)


def test_iou_counts_pixels_inclusively() -> None:
    a = np.array([[0.0, 0.0, 9.0, 9.0]])
    np.testing.assert_allclose(wider_iou(a, np.array([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 4.0, 9.0], [20.0, 20, 30, 30]])), [[1.0, 0.5, 0.0]])


def test_perfect_detections_score_100_everywhere() -> None:
    (truth, _) = parse_ground_truth(GT_TEXT)
    found = {"e/a.jpg": dets(truth.boxes.tolist(), [0.9, 0.8, 0.7])}
    # Detections of faces ignored in easy/medium are not false positives there.
    assert evaluate([truth], found) == pytest.approx({"easy": 100.0, "medium": 100.0, "hard": 100.0, "all": 100.0})


def test_no_detections_score_zero() -> None:
    (truth, _) = parse_ground_truth(GT_TEXT)
    assert evaluate([truth], {}) == {"easy": 0.0, "medium": 0.0, "hard": 0.0, "all": 0.0}


def test_false_positive_above_the_face_halves_ap() -> None:
    truth = [image("i", [[10, 10, 30, 30]], [(1, 1, 1)])]
    # Normalized scores 1.0 (miss), 0.5 (hit), 0.0 (miss): recall 1 is reached at precision 1/2.
    found = {"i": dets([FAR, [10, 10, 30, 30], FAR], [0.9, 0.5, 0.1])}
    assert evaluate(truth, found)["easy"] == pytest.approx(50.0)


def test_duplicate_detection_is_a_false_positive() -> None:
    truth = [image("i", [[10, 10, 30, 30], [50, 50, 70, 70]], [(1, 1, 1), (1, 1, 1)])]
    found = {"i": dets([[10, 10, 30, 30], [11, 10, 31, 30], [50, 50, 70, 70], FAR], [0.9, 0.8, 0.7, 0.1])}
    # Recall 1/2 at precision 1, then recall 1 at precision 2/3.
    assert evaluate(truth, found)["hard"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))


def test_match_to_ignored_face_is_neither_true_nor_false_positive() -> None:
    truth = [image("i", [[10, 10, 30, 30], [50, 50, 70, 70]], [(1, 1, 1), (0, 0, 1)])]
    found = {"i": dets([[50, 50, 70, 70], [10, 10, 30, 30], FAR], [0.9, 0.5, 0.1])}
    result = evaluate(truth, found)
    assert result["easy"] == pytest.approx(100.0)  # counted as a false positive it would be 50
    assert result["hard"] == pytest.approx(100.0)
    curve = pr_curve(truth, found, "easy")
    assert curve.recall.max() == 1.0 and curve.precision[curve.recall == 1.0].max() == 1.0


def test_images_without_faces_are_skipped() -> None:
    truth = [image("i", [[10, 10, 30, 30]], [(1, 1, 1)]), image("empty", [], [])]
    found = {"i": dets([[10, 10, 30, 30], FAR], [0.9, 0.1]), "empty": dets([[0, 0, 50, 50]], [0.95])}
    assert evaluate(truth, found)["all"] == pytest.approx(100.0)


def test_missed_faces_cap_recall() -> None:
    truth = [image("i", [[10, 10, 30, 30], [50, 50, 70, 70]], [(1, 1, 1), (1, 1, 1)])]
    found = {"i": dets([[10, 10, 30, 30], FAR], [0.9, 0.1])}
    assert evaluate(truth, found)["all"] == pytest.approx(50.0)


def test_voc_ap_uses_the_precision_envelope() -> None:
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.75])) == pytest.approx(0.5 + 0.5 * 0.75)


# --------------------------------------------------------------------------- loop port


def reference_iou(a: list[float], b: list[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
    return iw * ih / union


def reference_ap(truth: list[ImageTruth], found: dict[str, Detections], column: int | None) -> float:
    """The official evaluation loop (image_eval / img_pr_info / dataset_pr_info / voc_ap), plainly."""
    all_scores = [s for d in found.values() for s in d.scores.tolist()]
    low, high = min(all_scores), max(all_scores)
    proposals = [0.0] * 1000
    recalled = [0.0] * 1000
    faces = 0
    for item in truth:
        keep = [True] * len(item.boxes) if column is None else item.keep[:, column].tolist()
        faces += sum(keep)
        d = found.get(item.name)
        if d is None or len(d.scores) == 0 or len(item.boxes) == 0:
            continue
        pairs = sorted(zip(d.scores.tolist(), d.boxes.tolist()), key=lambda p: -p[0])
        scores = [(s - low) / (high - low) for s, _ in pairs]
        recall_list = [0] * len(item.boxes)
        proposal_list = [1] * len(pairs)
        pred_recall = [0] * len(pairs)
        for h, (_, box) in enumerate(pairs):
            overlaps = [reference_iou(box, g) for g in item.boxes.tolist()]
            best = max(overlaps)
            j = overlaps.index(best)
            if best >= 0.5:
                if not keep[j]:
                    recall_list[j] = -1
                    proposal_list[h] = -1
                elif recall_list[j] == 0:
                    recall_list[j] = 1
            pred_recall[h] = recall_list.count(1)
        for t in range(1000):
            thresh = 1 - (t + 1) / 1000
            above = [h for h, s in enumerate(scores) if s >= thresh]
            if above:
                r = above[-1]
                proposals[t] += proposal_list[: r + 1].count(1)
                recalled[t] += pred_recall[r]
    precision = [r / p if p else 0.0 for r, p in zip(recalled, proposals)]
    recall = [r / faces for r in recalled]
    mrec = [0.0, *recall, 1.0]
    mpre = [0.0, *precision, 0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return 100 * sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_official_loop_on_random_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth, found = [], {}
    for index in range(6):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(4, 60, (n, 2))
        boxes = np.column_stack((xy, xy + wh))
        keep = np.sort(rng.random((n, 3)) < 0.6, axis=1)  # easy ⊂ medium ⊂ hard, as in WIDER
        truth.append(ImageTruth(f"img{index}", 400, 400, boxes, keep))
        # Most faces found, some twice (duplicates), all a little off; plus boxes on no face.
        found_faces = boxes[rng.random(n) < 0.7]
        hits = np.repeat(found_faces, rng.integers(1, 3, len(found_faces)), axis=0)
        hits = hits + rng.normal(0, 2.5, hits.shape)
        noise_xy = rng.uniform(0, 300, (int(rng.integers(0, 6)), 2))
        noise = np.column_stack((noise_xy, noise_xy + rng.uniform(4, 60, noise_xy.shape)))
        all_boxes = np.concatenate((hits.reshape(-1, 4), noise))
        found[f"img{index}"] = Detections(all_boxes, rng.random(len(all_boxes)))
    result = evaluate(truth, found)
    for column, setting in ((0, "easy"), (1, "medium"), (2, "hard"), (None, "all")):
        assert result[setting] == pytest.approx(reference_ap(truth, found, column), abs=1e-9), setting
