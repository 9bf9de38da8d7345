"""The model decoders' and NMS's argument checks: each refusal's exact message, and the edge
values they still take (found by mutation testing: scripts/mutation.sh models)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dalistream.geometry import Letterbox
from dalistream.models.kinds import input_convention, output_decoder
from dalistream.models.nms import batched_nms, fixed_nms, nms
from dalistream.models.retinaface import RetinaFaceDecoder, retinaface_priors
from dalistream.models.scrfd import ScrfdDecoder, scrfd_anchor_centers


def refused(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def test_an_unknown_model_kind_is_named_with_the_known_ones() -> None:
    with refused("unknown model kind 'blazeface'; expected one of retinaface, yolov5face, scrfd"):
        input_convention("blazeface")
    with refused("unknown model kind 'blazeface'; expected one of retinaface, yolov5face, scrfd"):
        output_decoder("blazeface", 64, 64, 0.5, 0.4)


def test_priors_need_a_positive_input_and_take_the_smallest() -> None:
    assert retinaface_priors(1, 1).shape == (2 + 2 + 2, 4)  # one cell per stride, its two sizes each
    for width, height in ((0, 64), (64, 0), (-1, 64)):
        with refused(f"input size must be positive, got {width}x{height}"):
            retinaface_priors(width, height)


def test_face_decoder_settings_at_and_past_their_bounds() -> None:
    defaults = RetinaFaceDecoder(64, 64, 0.5, 0.4)
    assert (defaults.pre_nms_top_k, defaults.max_faces) == (5000, 750)
    for iou in (0.0, 1.0):
        assert RetinaFaceDecoder(64, 64, 0.0, iou).nms_iou == iou
    with refused("nms_iou must be in [0, 1], got 1.1"):
        RetinaFaceDecoder(64, 64, 0.5, 1.1)
    with refused("score_threshold must be in [0, 1), got 1.0"):
        RetinaFaceDecoder(64, 64, 1.0, 0.4)
    limits = {"pre_nms_top_k": 1, "max_faces": 1, "device_candidates": 1, "nms_passes": 1}
    RetinaFaceDecoder(64, 64, 0.5, 0.4, **limits)
    for name in limits:
        values = {**limits, name: 0}
        with refused(
            "pre_nms_top_k, max_faces, device_candidates and nms_passes must be >= 1, got "
            f"{values['pre_nms_top_k']}, {values['max_faces']}, {values['device_candidates']} and {values['nms_passes']}"
        ):
            RetinaFaceDecoder(64, 64, 0.5, 0.4, **values)


def test_nms_refusals() -> None:
    boxes, scores = np.zeros((2, 4)), np.ones(2)
    with refused("iou_threshold must be in [0, 1], got 1.5"):
        nms(boxes, scores, 1.5)
    with refused("scores must have shape (2,) to match boxes, got (3,)"):
        nms(boxes, np.ones(3), 0.5)
    with refused("groups must have shape (2,) to match boxes, got (1,)"):
        batched_nms(boxes, scores, np.zeros(1, np.int64), 0.5)
    with refused("boxes must be (N, K, 4) and valid (N, K), got (1, 2, 3) and (1, 2)"):
        fixed_nms(np.zeros((1, 2, 3)), np.ones((1, 2), bool), 0.5, 1)
    with refused("boxes must be (N, K, 4) and valid (N, K), got (1, 2, 4) and (1, 3)"):
        fixed_nms(np.zeros((1, 2, 4)), np.ones((1, 3), bool), 0.5, 1)
    with refused("iou_threshold must be in [0, 1], got 1.5"):
        fixed_nms(np.zeros((1, 2, 4)), np.ones((1, 2), bool), 1.5, 1)


def scrfd_outputs(batch: int = 1) -> dict[str, np.ndarray]:
    """A 64x64 SCRFD's nine outputs: 128, 32 and 8 anchors at strides 8, 16 and 32."""
    return {f"{kind}{stride}": np.zeros((batch, anchors, width), np.float32)
            for kind, width in (("score", 1), ("bbox", 4), ("kps", 10))
            for stride, anchors in ((8, 128), (16, 32), (32, 8))}  # fmt: skip


def test_scrfd_outputs_that_do_not_fit_are_named() -> None:
    decoder = ScrfdDecoder(64, 64, 0.5, 0.4)
    fit = "does not fit a 64x64 input (expected [N,] A x 1|4|10 per stride 8/16/32, once each)"
    with refused(f"SCRFD output 'odd' of shape (1, 128, 3) {fit}"):
        decoder._arrange({**scrfd_outputs(), "odd": np.zeros((1, 128, 3))})
    with refused(f"SCRFD output 'again' of shape (1, 128, 1) {fit}"):
        decoder._arrange({**scrfd_outputs(), "again": np.zeros((1, 128, 1))})
    with refused("SCRFD outputs missing: score@16, score@32, bbox@8, bbox@16, bbox@32, kps@8, kps@16, kps@32 "
                 "(a *_bnkps export has nine outputs)"):  # fmt: skip
        decoder._arrange({"score8": np.zeros((1, 128, 1))})
    with refused("SCRFD outputs disagree on the batch size: [1, 2]"):
        decoder._arrange({**scrfd_outputs(), "score8": np.zeros((2, 128, 1))})


def test_a_score_at_the_threshold_is_not_a_face_and_one_above_is() -> None:
    decoder = RetinaFaceDecoder(64, 64, 0.5, 0.4)
    priors = decoder.num_priors
    conf = np.zeros((1, priors, 2), np.float32)
    outputs = {"loc": np.zeros((1, priors, 4), np.float32), "conf": conf, "landmarks": np.zeros((1, priors, 10), np.float32)}
    letterbox = [Letterbox.fit(64, 64, 64, 64)]
    conf[0, 7, 1] = 0.5
    assert len(decoder(outputs, letterbox)[0].scores) == 0
    conf[0, 7, 1] = np.nextafter(np.float32(0.5), np.float32(1))
    assert len(decoder(outputs, letterbox)[0].scores) == 1


def test_retinaface_heads_of_the_wrong_shape_are_named() -> None:
    decoder = RetinaFaceDecoder(64, 64, 0.5, 0.4)
    priors = decoder.num_priors
    heads = {"loc": np.zeros((1, priors, 4)), "conf": np.zeros((1, priors, 2)), "landmarks": np.zeros((1, priors, 10))}
    for name, width in (("loc", 4), ("landmarks", 10)):
        wrong = {**heads, name: np.zeros((1, priors, width - 1))}
        with refused(f"{name} shape mismatch for a 64x64 input: expected (1, {priors}, {width}), got (1, {priors}, {width - 1})"):
            decoder.heads(wrong)


def test_tiny_boxes_that_coincide_suppress_each_other() -> None:
    tiny = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])  # an area, and a union, under 1
    assert list(nms(tiny, np.array([0.9, 0.8]), 0.5)) == [0]
    keep, settled = fixed_nms(tiny[None], np.ones((1, 2), bool), 0.5, 2)
    assert keep.tolist() == [[True, False]] and settled.tolist() == [True]


def test_scrfd_anchors_come_in_pairs_cell_by_cell_row_by_row() -> None:
    anchors = scrfd_anchor_centers(64, 64)  # (x, y, stride): two anchors a cell, as insightface lays them out
    assert anchors[:6].tolist() == [[0, 0, 8], [0, 0, 8], [8, 0, 8], [8, 0, 8], [16, 0, 8], [16, 0, 8]]
    assert anchors[16].tolist() == [0, 8, 8] and anchors[128].tolist() == [0, 0, 16] and len(anchors) == 128 + 32 + 8
