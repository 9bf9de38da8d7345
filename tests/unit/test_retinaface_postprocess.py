"""RetinaFace post-processing: NMS, priors and the batch decoder against a plain reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_retinaface as ref
from dalistream.geometry import Letterbox
from dalistream.models.nms import batched_nms, nms
from dalistream.models.faces import Faces
from dalistream.models.retinaface import RetinaFaceDecoder, retinaface_priors


INPUT_W, INPUT_H = 960, 544
MEAN_BGR = np.array([104.0, 117.0, 123.0])


# --------------------------------------------------------------------------- helpers


def reference_decode(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    letterboxes: list[Letterbox],
    *,
    score_threshold: float,
    nms_iou: float,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> list[list[ref.Detection]]:
    return [
        ref.postprocess_image(
            loc[i].tolist(),
            conf[i].tolist(),
            landmarks[i].tolist(),
            width=lb.input_width,
            height=lb.input_height,
            source_width=lb.source_width,
            source_height=lb.source_height,
            content_width=lb.content_width,
            content_height=lb.content_height,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            top_k=top_k,
            keep_top_k=keep_top_k,
        )
        for i, lb in enumerate(letterboxes)
    ]


def assert_faces_match(faces: list[Faces], expected: list[list[ref.Detection]]) -> None:
    assert len(faces) == len(expected)
    for image, (got, want) in enumerate(zip(faces, expected, strict=True)):
        assert got.boxes.dtype == got.scores.dtype == got.landmarks.dtype == np.float32
        assert got.boxes.shape == (len(want), 4), f"image {image}: face count differs"
        assert got.scores.shape == (len(want),)
        assert got.landmarks.shape == (len(want), 5, 2)
        assert np.all(np.diff(got.scores) <= 0), f"image {image}: scores not descending"
        if not want:
            continue
        want_boxes = np.array([d.box for d in want])
        want_scores = np.array([d.score for d in want])
        want_points = np.array([d.landmarks for d in want]).reshape(-1, 5, 2)
        got_order = np.lexsort((got.boxes[:, 1], got.boxes[:, 0], -got.scores))
        want_order = np.lexsort((want_boxes[:, 1], want_boxes[:, 0], -want_scores))
        np.testing.assert_allclose(got.scores[got_order], want_scores[want_order], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.boxes[got_order], want_boxes[want_order], rtol=0, atol=1e-3)
        np.testing.assert_allclose(got.landmarks[got_order], want_points[want_order], rtol=0, atol=1e-3)


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    n = len(boxes)
    return np.array([[ref.iou(boxes[i].tolist(), boxes[j].tolist()) for j in range(n)] for i in range(n)])


def nearest_priors(priors_px: np.ndarray, cx: float, cy: float, size: float, count: int) -> np.ndarray:
    """Indices of the ``count`` priors (input px) nearest a box centre and side length."""
    distance = (priors_px[:, 0] - cx) ** 2 + (priors_px[:, 1] - cy) ** 2 + (priors_px[:, 2] - size) ** 2
    return np.argsort(distance, kind="stable")[:count]


# --------------------------------------------------------------------------- NMS


def test_nms_keeps_best_of_overlapping_pair_and_separate_box() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7], dtype=np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1, 2])


def test_nms_threshold_is_inclusive_for_keeping() -> None:
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=np.float64)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.49), [0])


def test_nms_suppressed_box_does_not_suppress_others() -> None:
    # A overlaps B, B overlaps C, A does not overlap C: B goes, C stays.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(nms(boxes, scores, 0.3), [0, 2])


def test_nms_equal_scores_keep_input_order_and_empty_boxes_survive() -> None:
    boxes = np.array([[5, 5, 5, 5], [0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5]], dtype=np.float64)
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1, 3])


def test_nms_empty_input() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), 0.5).shape == (0,)


def test_nms_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        nms(np.zeros((3, 5)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="groups"):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2, dtype=np.int64), 0.5)
    with pytest.raises(ValueError, match="integer"):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(3), 0.5)


def test_batched_nms_keeps_identical_boxes_in_different_groups() -> None:
    boxes = np.array([[0, 0, 10, 10]] * 4, dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    groups = np.array([7, 7, -2, -2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, groups, 0.5), [0, 2])


@st.composite
def grouped_boxes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Integer-coordinate boxes (so group offsets are exact), scores with ties, group ids."""
    n = draw(st.integers(0, 40))
    corners = draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=n, max_size=n))
    sizes = draw(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=n, max_size=n))
    scores = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    groups = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    threshold = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]))
    boxes = np.array([[x, y, x + w, y + h] for (x, y), (w, h) in zip(corners, sizes)], dtype=np.float64)
    return boxes.reshape(-1, 4), np.array(scores, dtype=np.float64) / 20, np.array(groups, dtype=np.int64), threshold


@settings(max_examples=150, deadline=None)
@given(grouped_boxes())
def test_batched_nms_properties(case: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
    boxes, scores, groups, threshold = case
    kept = batched_nms(boxes, scores, groups, threshold)

    per_group: list[int] = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        per_group += members[nms(boxes[members], scores[members], threshold)].tolist()
    assert sorted(kept.tolist()) == sorted(per_group)
    assert np.all(np.diff(scores[kept]) <= 0)

    ious = iou_matrix(boxes)
    same_group = groups[:, None] == groups[None, :]
    for a in kept:
        for b in kept:
            if a != b and same_group[a, b]:
                assert ious[a, b] <= threshold
    for s in np.setdiff1d(np.arange(len(boxes)), kept):
        assert any(same_group[k, s] and scores[k] >= scores[s] and ious[k, s] > threshold for k in kept)


# --------------------------------------------------------------------------- priors


@pytest.mark.parametrize(("width", "height", "count"), [(960, 544, 21420), (640, 640, 16800)])
def test_prior_count(width: int, height: int, count: int) -> None:
    assert retinaface_priors(width, height).shape == (count, 4)


@pytest.mark.parametrize(("width", "height"), [(960, 544), (100, 60)])
def test_priors_match_reference_prior_box(width: int, height: int) -> None:
    np.testing.assert_allclose(retinaface_priors(width, height), np.array(ref.prior_box(width, height)), atol=1e-12)


@pytest.mark.parametrize(("width", "height"), [(960, 544), (640, 640)])
def test_prior_count_matches_model_outputs(ort_session: ort.InferenceSession, width: int, height: int) -> None:
    loc, conf, landmarks = ort_session.run(None, {"input": np.zeros((1, 3, height, width), dtype=np.float32)})
    count = retinaface_priors(width, height).shape[0]
    assert loc.shape == (1, count, 4)
    assert conf.shape == (1, count, 2)
    assert landmarks.shape == (1, count, 10)


# --------------------------------------------------------------------------- decoder validation


def test_decoder_rejects_mismatched_shapes() -> None:
    decoder = RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4)
    lb = Letterbox.fit(1920, 1080, INPUT_W, INPUT_H)
    good = {"loc": np.zeros((1, 21420, 4)), "conf": np.zeros((1, 21420, 2)), "landmarks": np.zeros((1, 21420, 10))}
    with pytest.raises(ValueError, match=r"expected \(1, 21420, 4\), got \(1, 16800, 4\)"):
        decoder({**good, "loc": np.zeros((1, 16800, 4))}, [lb])
    with pytest.raises(ValueError, match=r"conf .*expected \(1, 21420, 2\), got \(2, 21420, 2\)"):
        decoder({**good, "conf": np.zeros((2, 21420, 2))}, [lb])
    with pytest.raises(ValueError, match="loc must have shape"):
        decoder({**good, "loc": np.zeros((21420, 4))}, [lb])
    with pytest.raises(ValueError, match="must be named loc, conf, landmarks"):
        decoder({"loc": good["loc"], "conf": good["conf"]}, [lb])
    with pytest.raises(ValueError, match="expected 1 letterboxes"):
        decoder(good, [lb, lb])
    with pytest.raises(ValueError, match="does not match decoder input"):
        decoder(good, [Letterbox.fit(1920, 1080, 640, 640)])


def test_decoder_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=1.0, nms_iou=0.4)
    with pytest.raises(ValueError, match="nms_iou"):
        RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=1.5)
    with pytest.raises(ValueError, match="max_faces"):
        RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4, max_faces=0)
    with pytest.raises(ValueError, match="device_candidates"):
        RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4, device_candidates=0)


def test_decoder_empty_batch_item_has_empty_arrays() -> None:
    decoder = RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4)
    conf = np.zeros((2, 21420, 2), dtype=np.float32)
    loc = np.zeros((2, 21420, 4), np.float32)
    landmarks = np.zeros((2, 21420, 10), np.float32)
    faces = decoder({"loc": loc, "conf": conf, "landmarks": landmarks}, [Letterbox.fit(1920, 1080, INPUT_W, INPUT_H)] * 2)
    assert [f.boxes.shape for f in faces] == [(0, 4), (0, 4)]
    assert [f.scores.shape for f in faces] == [(0,), (0,)]
    assert [f.landmarks.shape for f in faces] == [(0, 5, 2), (0, 5, 2)]


# --------------------------------------------------------------------------- synthetic planted heads

SYNTHETIC_LETTERBOXES = [
    Letterbox.fit(1920, 1080, INPUT_W, INPUT_H),  # content 960x540
    Letterbox.fit(1280, 720, INPUT_W, INPUT_H),  # content 960x540, scale 0.75
    Letterbox.fit(480, 640, INPUT_W, INPUT_H),  # portrait, content 408x544
]
# Per image: (x1, y1, x2, y2) in source px and score. Non-overlapping; one runs off the frame.
PLANTED = [
    [((100, 100, 300, 340), 0.99), ((900, 500, 1000, 620), 0.95), ((1800, 900, 2000, 1150), 0.90)],
    [((50, 60, 250, 300), 0.97), ((700, 400, 760, 470), 0.93)],
    [((20, 40, 200, 260), 0.98), ((300, 400, 420, 560), 0.91), ((250, 50, 300, 110), 0.86)],
]
PLANTED_POINTS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])  # box-relative


def plant_heads(
    rng: np.random.Generator, noise_anchors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[tuple[np.ndarray, np.ndarray, float]]]]:
    """Head outputs with the PLANTED faces (plus near-duplicates) and optional random noise.

    Returns loc, conf, landmarks and, per image, the expected (box, landmarks, score) in
    source pixels for the planted faces.
    """
    priors_px = np.array(ref.prior_box(INPUT_W, INPUT_H)) * [INPUT_W, INPUT_H, INPUT_W, INPUT_H]
    n, a = len(PLANTED), len(priors_px)
    loc = rng.normal(0.0, 1.0, (n, a, 4)).astype(np.float32)
    landmarks = rng.normal(0.0, 1.0, (n, a, 10)).astype(np.float32)
    face = rng.uniform(0.0, 0.2, (n, a)).astype(np.float32)
    for image in range(n):
        noisy = rng.choice(a, size=noise_anchors, replace=False)
        face[image, noisy] = rng.uniform(0.3, 0.6, noise_anchors)

    expected = []
    for image, (lb, planted) in enumerate(zip(SYNTHETIC_LETTERBOXES, PLANTED, strict=True)):
        expected.append([])
        for (x1, y1, x2, y2), score in planted:
            source_box = np.array([x1, y1, x2, y2], dtype=np.float64)
            input_box = source_box * [lb.scale_x, lb.scale_y, lb.scale_x, lb.scale_y]
            cx, cy = (input_box[:2] + input_box[2:]) / 2
            w, h = input_box[2:] - input_box[:2]
            source_points = source_box[:2] + PLANTED_POINTS * (source_box[2:] - source_box[:2])
            input_points = source_points * [lb.scale_x, lb.scale_y]
            # The true face on the nearest anchor, then near-duplicates (a few px off, lower
            # scores) on the next nearest anchors: NMS must remove them.
            anchors = nearest_priors(priors_px, cx, cy, max(w, h), count=3)
            for anchor, jitter, jitter_score in zip(anchors, (0.0, 3.0, -4.0), (0.0, 0.05, 0.08), strict=True):
                pcx, pcy, psx, psy = priors_px[anchor]
                loc[image, anchor] = [
                    (cx + jitter - pcx) / (0.1 * psx),
                    (cy + jitter - pcy) / (0.1 * psy),
                    math.log(w / psx) / 0.2,
                    math.log(h / psy) / 0.2,
                ]
                landmarks[image, anchor] = ((input_points - [pcx, pcy]) / (0.1 * np.array([psx, psy]))).ravel()
                face[image, anchor] = score - jitter_score
            clipped = np.clip(source_box, 0, [lb.source_width, lb.source_height] * 2)
            expected[-1].append((clipped, source_points, score))
    conf = np.stack([1.0 - face, face], axis=-1).astype(np.float32)
    return loc, conf, landmarks, expected


def test_planted_faces_found_exactly_after_duplicates_suppressed() -> None:
    loc, conf, landmarks, expected = plant_heads(np.random.default_rng(1), noise_anchors=0)
    decoder = RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4)
    faces = decoder({"loc": loc, "conf": conf, "landmarks": landmarks}, SYNTHETIC_LETTERBOXES)
    for got, want in zip(faces, expected, strict=True):
        assert len(got.scores) == len(want)
        np.testing.assert_allclose(got.scores, [score for _, _, score in want], atol=1e-6)
        np.testing.assert_allclose(got.boxes, [box for box, _, _ in want], atol=1e-3)
        np.testing.assert_allclose(got.landmarks, [points for _, points, _ in want], atol=1e-3)
    assert_faces_match(
        faces, reference_decode(loc, conf, landmarks, SYNTHETIC_LETTERBOXES, score_threshold=0.5, nms_iou=0.4)
    )


@pytest.mark.parametrize(("top_k", "max_faces"), [(5000, 750), (60, 750), (5000, 25), (40, 10)])
def test_planted_faces_with_noise_match_reference(top_k: int, max_faces: int) -> None:
    loc, conf, landmarks, expected = plant_heads(np.random.default_rng(2), noise_anchors=150)
    decoder = RetinaFaceDecoder(
        INPUT_W, INPUT_H, score_threshold=0.3, nms_iou=0.4, pre_nms_top_k=top_k, max_faces=max_faces
    )
    faces = decoder({"loc": loc, "conf": conf, "landmarks": landmarks}, SYNTHETIC_LETTERBOXES)
    want = reference_decode(
        loc, conf, landmarks, SYNTHETIC_LETTERBOXES,
        score_threshold=0.3, nms_iou=0.4, top_k=top_k, keep_top_k=max_faces,
    )
    assert_faces_match(faces, want)
    for got, planted in zip(faces, expected, strict=True):
        assert len(got.scores) <= max_faces
        np.testing.assert_allclose(got.boxes[: len(planted)], [box for box, _, _ in planted], atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    input_size=st.tuples(st.integers(16, 128), st.integers(16, 128)),
    sources=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=4),
    score_threshold=st.floats(0.0, 0.9),
    nms_iou=st.floats(0.05, 0.95),
    top_k=st.integers(1, 60),
    max_faces=st.integers(1, 30),
)
def test_random_heads_match_reference(
    seed: int,
    input_size: tuple[int, int],
    sources: list[tuple[int, int]],
    score_threshold: float,
    nms_iou: float,
    top_k: int,
    max_faces: int,
) -> None:
    """Random head tensors (NumPy-drawn, so IoUs are continuous) for random configurations."""
    width, height = input_size
    letterboxes = [Letterbox.fit(sw, sh, width, height) for sw, sh in sources]
    rng = np.random.default_rng(seed)
    a, n = len(ref.prior_box(width, height)), len(letterboxes)
    loc = rng.normal(0.0, 1.5, (n, a, 4)).astype(np.float32)
    landmarks = rng.normal(0.0, 2.0, (n, a, 10)).astype(np.float32)
    face = rng.uniform(0.0, 1.0, (n, a)).astype(np.float32)
    conf = np.stack([1.0 - face, face], axis=-1)
    decoder = RetinaFaceDecoder(width, height, score_threshold, nms_iou, pre_nms_top_k=top_k, max_faces=max_faces)
    want = reference_decode(
        loc, conf, landmarks, letterboxes,
        score_threshold=score_threshold, nms_iou=nms_iou, top_k=top_k, keep_top_k=max_faces,
    )
    assert_faces_match(decoder({"loc": loc, "conf": conf, "landmarks": landmarks}, letterboxes), want)


# --------------------------------------------------------------------------- real model outputs


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(weight * padded[tap : tap + height] for tap, weight in enumerate(kernel))
    return sum(weight * rows[:, tap : tap + width] for tap, weight in enumerate(kernel))


def cartoon_faces(height: int, width: int, faces: list[tuple[float, float, float]]) -> np.ndarray:
    """A blurred BGR drawing of simple faces (hair, skin, eyes, brows, nose, mouth) at (cx, cy, size)."""
    yy, xx = np.mgrid[0:height, 0:width]

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

    image = np.empty((height, width, 3))
    image[:] = (90, 110, 100)
    for cx, cy, size in faces:
        rx, ry = size * 0.4, size * 0.52
        image[ellipse(cy - ry * 0.25, cx, ry * 0.85, rx * 1.1)] = (30, 35, 40)
        image[ellipse(cy, cx, ry, rx)] = (140, 170, 220)
        for side in (-1, 1):
            image[ellipse(cy - ry * 0.2, cx + side * rx * 0.4, ry * 0.07, rx * 0.18)] = (40, 40, 50)
            image[ellipse(cy - ry * 0.33, cx + side * rx * 0.4, ry * 0.04, rx * 0.22)] = (50, 60, 70)
        image[ellipse(cy + ry * 0.15, cx, ry * 0.18, rx * 0.1)] = (120, 150, 200)
        image[ellipse(cy + ry * 0.5, cx, ry * 0.07, rx * 0.35)] = (70, 70, 160)
    return gaussian_blur(image, 1.5)


REAL_LETTERBOXES = [
    Letterbox.fit(1920, 1080, INPUT_W, INPUT_H),
    Letterbox.fit(1280, 720, INPUT_W, INPUT_H),
    Letterbox.fit(640, 480, INPUT_W, INPUT_H),
]
# Drawn faces (cx, cy, size) in content pixels of image 1.
DRAWN_FACES = [(200.0, 250.0, 160.0), (600.0, 200.0, 100.0), (800.0, 400.0, 60.0)]


@pytest.fixture(scope="module")
def ort_session(model_path: Path) -> ort.InferenceSession:
    """CPU session on the model; skips (fails in CI) when it is missing, see conftest."""
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def real_outputs(ort_session: ort.InferenceSession) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model outputs for noise, drawn faces and a blurred blob, each in its own letterbox."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (540, 960, 3))
    faces = cartoon_faces(540, 960, DRAWN_FACES)
    yy, xx = np.mgrid[0:544, 0:725]
    disc = ((yy - 272) ** 2 + (xx - 360) ** 2 <= 120**2)[..., None]
    blob = gaussian_blur(np.where(disc, [200.0, 190.0, 180.0], [60.0, 70.0, 80.0]), 3.0)
    batch = np.zeros((3, 3, INPUT_H, INPUT_W), dtype=np.float32)
    for i, (image, lb) in enumerate(zip((noise, faces, blob), REAL_LETTERBOXES, strict=True)):
        assert image.shape[:2] == (lb.content_height, lb.content_width)
        batch[i, :, : lb.content_height, : lb.content_width] = (image - MEAN_BGR).transpose(2, 0, 1)
    loc, conf, landmarks = ort_session.run(None, {"input": batch})
    return loc, conf, landmarks


@pytest.mark.parametrize("score_threshold", [0.02, 0.5])
def test_real_model_outputs_match_reference(real_outputs: tuple[np.ndarray, ...], score_threshold: float) -> None:
    loc, conf, landmarks = real_outputs
    decoder = RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=score_threshold, nms_iou=0.4)
    faces = decoder({"loc": loc, "conf": conf, "landmarks": landmarks}, REAL_LETTERBOXES)
    want = reference_decode(
        loc, conf, landmarks, REAL_LETTERBOXES, score_threshold=score_threshold, nms_iou=0.4
    )
    assert_faces_match(faces, want)


def test_real_model_finds_the_drawn_faces(real_outputs: tuple[np.ndarray, ...]) -> None:
    loc, conf, landmarks = real_outputs
    faces = RetinaFaceDecoder(INPUT_W, INPUT_H, score_threshold=0.5, nms_iou=0.4)(
        {"loc": loc, "conf": conf, "landmarks": landmarks}, REAL_LETTERBOXES
    )[1]
    lb = REAL_LETTERBOXES[1]
    centers = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    for cx, cy, size in DRAWN_FACES:
        source_center = np.array([cx / lb.scale_x, cy / lb.scale_y])
        distance = np.linalg.norm(centers - source_center, axis=1)
        assert distance.min() < 0.25 * size / lb.scale_x, f"no face near {source_center}"
