"""A bring-your-own model kind through the real eval path and the service's detector.

No YOLOv5-Face weights ship with the project, so a tiny real ONNX model stands in: it returns
the red channel of the model input's top rows as the ``(N, A, 16)`` YOLOv5-Face output (scaled
back to pixels where the layout holds pixels). A face planted in those pixels is only found
when the frame is converted to RGB, divided by 255, run by ONNX Runtime and decoded by the
YOLOv5-Face decoder, as ``model.kind = "yolov5face"`` promises.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from dalistream.tools.accuracy import detect
from dalistream.config import ModelConfig
from dalistream.decode import SampledFrame
from dalistream.device import CPU_PLAN
from dalistream.geometry import Letterbox
from dalistream.engine.detector import Detector
from dalistream.pipeline.runtime import analyse
from dalistream.tools.evaluation import ImageTruth

SIZE = 64  # input and image side, px
ROWS = 8  # anchors
PIXEL_SCALE = [255.0] * 4 + [1.0] + [255.0] * 10 + [1.0]  # cx, cy, w, h, obj, 10 landmarks, cls


def const(name: str, values: list[float], dtype: int = TensorProto.INT64) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [len(values)], values)


def red_rows_model(path: Path) -> Path:
    """ONNX: output[n, a, k] = input[n, 0, a, k] * PIXEL_SCALE[k] for a < ROWS, k < 16."""
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["block"]),
            helper.make_node("Squeeze", ["block"], ["rows"], axes=[1]),
            helper.make_node("Mul", ["rows", "scale"], ["output"]),
        ],
        "red_rows",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", ROWS, 16])],
        [
            const("starts", [0, 0, 0]),
            const("ends", [1, ROWS, 16]),
            const("axes", [1, 2, 3]),
            const("scale", PIXEL_SCALE, TensorProto.FLOAT),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def planted_image() -> np.ndarray:
    """RGB image whose red row 0 encodes one face: box (20, 18)-(40, 42), score 250/255."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[0, :16, 0] = [30, 30, 20, 24, 250, 24, 26, 36, 26, 30, 32, 25, 38, 35, 38, 255]
    image[0, :16, 2] = 200  # blue: read instead of red only if the channel order were wrong
    return image


@pytest.fixture
def model(tmp_path: Path) -> ModelConfig:
    return ModelConfig(onnx=red_rows_model(tmp_path / "red_rows.onnx"), kind="yolov5face", input=(SIZE, SIZE))


def test_eval_path_finds_the_planted_face(model: ModelConfig, tmp_path: Path) -> None:
    Image.fromarray(planted_image()).save(tmp_path / "face.png")
    truth = [ImageTruth("face.png", SIZE, SIZE, np.zeros((0, 4)), np.zeros((0, 3), bool))]
    found = detect(model, tmp_path, truth)["face.png"]
    np.testing.assert_allclose(found.boxes, [[20, 18, 40, 42]], atol=1e-4)
    np.testing.assert_allclose(found.scores, [250 / 255], atol=1e-6)


def test_the_service_detector_uses_the_kind_s_convention_and_decoder(model: ModelConfig) -> None:
    detector = Detector(dataclasses.replace(model, score_threshold=0.5), CPU_PLAN, max_batch=8)
    frame = SampledFrame("cam", 0, 0.0, planted_image(), Letterbox.fit(SIZE, SIZE, SIZE, SIZE), 0.0, 0.0)
    (record,) = analyse(detector, [frame])
    (face,) = record["faces"]
    np.testing.assert_allclose(face["box"], [20, 18, 40, 42], atol=1e-3)
    np.testing.assert_allclose(face["landmarks"][0], [24, 26], atol=1e-3)
