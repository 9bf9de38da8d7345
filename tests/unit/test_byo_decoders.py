"""Bring-your-own decoders (YOLOv5-Face, SCRFD) against the plain references on synthetic heads."""

from __future__ import annotations

import numpy as np
import pytest

import reference_byo as ref
from synthetic_heads import scrfd_outputs, yolo_outputs
from dalistream.config import ConfigError, from_mapping
from dalistream.geometry import Letterbox
from dalistream.models.kinds import MODEL_KINDS, input_convention, output_decoder
from dalistream.models.faces import Faces
from dalistream.models.scrfd import ScrfdDecoder
from dalistream.models.yolov5face import YoloV5FaceDecoder

SOURCES = [(1920, 1080), (640, 480), (1000, 1500)]
THRESHOLD, NMS_IOU = 0.5, 0.4


def letterboxes(width: int, height: int) -> list[Letterbox]:
    return [Letterbox.fit(w, h, width, height) for w, h in SOURCES]


def expected(decoded: list[list[ref.Detection]], boxes: list[Letterbox]) -> list[list[ref.Detection]]:
    return [
        ref.to_source(
            image,
            score_threshold=THRESHOLD,
            nms_iou=NMS_IOU,
            keep_top_k=750,
            source=(lb.source_width, lb.source_height),
            content=(lb.content_width, lb.content_height),
        )
        for image, lb in zip(decoded, boxes)
    ]


def assert_same(faces: list[Faces], want: list[list[ref.Detection]], planted: int) -> None:
    assert len(faces) == len(want)
    for image, (got, exp) in enumerate(zip(faces, want)):
        assert got.boxes.shape == (len(exp), 4), f"image {image}: {len(got.boxes)} faces, reference {len(exp)}"
        # Every planted face survives NMS; its duplicates do not.
        assert len(exp) >= planted
        assert got.landmarks.shape == (len(exp), 5, 2)
        assert np.all(np.diff(got.scores) <= 0)
        np.testing.assert_allclose(got.scores, [d.score for d in exp], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.boxes, [d.box for d in exp], rtol=0, atol=1e-3)
        np.testing.assert_allclose(got.landmarks, np.reshape([d.landmarks for d in exp], (-1, 5, 2)), rtol=0, atol=1e-3)


# --------------------------------------------------------------------------- YOLOv5-Face


@pytest.mark.parametrize(("width", "height"), [(320, 256), (640, 640)])
def test_yolov5face_matches_reference(width: int, height: int) -> None:
    rng = np.random.default_rng(width + height)
    boxes = letterboxes(width, height)
    pred = yolo_outputs(rng, width, height, len(boxes), planted=6)
    faces = YoloV5FaceDecoder(width, height, THRESHOLD, NMS_IOU)({"output": pred}, boxes)
    want = expected([ref.yolov5face_image(pred[i].tolist()) for i in range(len(boxes))], boxes)
    assert_same(faces, want, planted=6)


def test_yolov5face_rejects_wrong_layout() -> None:
    decoder = YoloV5FaceDecoder(320, 256, THRESHOLD, NMS_IOU)
    boxes = letterboxes(320, 256)[:1]
    with pytest.raises(ValueError, match=r"\(N, A, 16\)"):
        decoder({"output": np.zeros((1, 100, 15), np.float32)}, boxes)
    with pytest.raises(ValueError, match="one output"):
        decoder({"a": np.zeros((1, 100, 16), np.float32), "b": np.zeros((1, 100, 16), np.float32)}, boxes)
    with pytest.raises(ValueError, match="letterboxes"):
        decoder({"output": np.zeros((2, 100, 16), np.float32)}, boxes)


# --------------------------------------------------------------------------- SCRFD


def scrfd_reference(heads: dict[int, dict[str, np.ndarray]], image: int, width: int, height: int) -> list[ref.Detection]:
    return ref.scrfd_image(
        {s: heads[s]["score"][image, :, 0].tolist() for s in heads},
        {s: heads[s]["bbox"][image].tolist() for s in heads},
        {s: heads[s]["kps"][image].tolist() for s in heads},
        width=width,
        height=height,
    )


@pytest.mark.parametrize(("width", "height"), [(320, 256), (640, 480)])
def test_scrfd_batched_matches_reference(width: int, height: int) -> None:
    rng = np.random.default_rng(width * height)
    boxes = letterboxes(width, height)
    heads = scrfd_outputs(rng, width, height, len(boxes), planted=6)
    # insightface's output order (scores, boxes, landmarks) with numeric names, then shuffled:
    # the decoder tells outputs apart by shape only.
    named = {str(400 + i): heads[s][k] for i, (k, s) in enumerate((k, s) for k in ("score", "bbox", "kps") for s in (8, 16, 32))}
    shuffled = dict(sorted(named.items(), key=lambda item: rng.random()))
    faces = ScrfdDecoder(width, height, THRESHOLD, NMS_IOU)(shuffled, boxes)
    want = expected([scrfd_reference(heads, i, width, height) for i in range(len(boxes))], boxes)
    assert_same(faces, want, planted=6)


def test_scrfd_unbatched_layout() -> None:
    width, height = 320, 256
    rng = np.random.default_rng(7)
    boxes = letterboxes(width, height)[1:2]
    heads = scrfd_outputs(rng, width, height, 1, planted=4)
    unbatched = {f"{k}_{s}": heads[s][k][0] for s in heads for k in heads[s]}
    faces = ScrfdDecoder(width, height, THRESHOLD, NMS_IOU)(unbatched, boxes)
    assert_same(faces, expected([scrfd_reference(heads, 0, width, height)], boxes), planted=4)


def test_scrfd_rejects_outputs_of_another_size() -> None:
    heads = scrfd_outputs(np.random.default_rng(1), 320, 256, 1, planted=1)
    outputs = {f"{k}_{s}": heads[s][k] for s in heads for k in heads[s]}
    boxes = letterboxes(640, 480)[:1]
    with pytest.raises(ValueError, match="does not fit a 640x480 input"):
        ScrfdDecoder(640, 480, THRESHOLD, NMS_IOU)(outputs, boxes)
    del outputs["kps_32"]
    with pytest.raises(ValueError, match="missing: kps@32"):
        ScrfdDecoder(320, 256, THRESHOLD, NMS_IOU)(outputs, letterboxes(320, 256)[:1])


def test_top_k_keeps_best_survivors_per_image() -> None:
    width, height = 320, 256
    boxes = letterboxes(width, height)
    pred = yolo_outputs(np.random.default_rng(3), width, height, len(boxes), planted=6)
    pred[..., 4] = np.maximum(pred[..., 4], 0.6)  # every anchor survives the threshold
    faces = YoloV5FaceDecoder(width, height, THRESHOLD, NMS_IOU, pre_nms_top_k=40)({"o": pred}, boxes)
    decoded = [ref.yolov5face_image(pred[i].tolist()) for i in range(len(boxes))]
    top = [sorted(image, key=lambda d: -d.score)[:40] for image in decoded]
    assert_same(faces, expected(top, boxes), planted=0)


# --------------------------------------------------------------------------- selection by config


def test_model_kind_is_validated() -> None:
    camera = [{"id": "c", "url": "rtsp://h/s"}]
    assert from_mapping({"camera": camera}).model.kind == "retinaface"
    assert from_mapping({"camera": camera, "model": {"kind": "scrfd"}}).model.kind == "scrfd"
    with pytest.raises(ConfigError, match=r"model\.kind"):
        from_mapping({"camera": camera, "model": {"kind": "yolov8"}})


def test_each_kind_has_a_convention_and_decoder() -> None:
    assert input_convention("retinaface").pixel_format == "bgr24"
    assert input_convention("yolov5face").std == (255.0, 255.0, 255.0)
    assert input_convention("scrfd").mean == (127.5, 127.5, 127.5)
    for kind in MODEL_KINDS:
        assert callable(output_decoder(kind, 320, 256, THRESHOLD, NMS_IOU))
    with pytest.raises(ValueError, match="unknown model kind"):
        input_convention("yolov8")
