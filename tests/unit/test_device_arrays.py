"""The face decoders' device form on a CuPy stand-in (``fake_gpu``) that refuses what CuPy
refuses (implicit conversion to the host, NumPy arrays as operands) and counts every host round
trip: no GPU here, so this checks the device form's logic and its one transfer per batch, not
CuPy itself (tests/gpu does that)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import fake_gpu
from model_inputs import INPUT, clip_frames, model_input
from synthetic_heads import scrfd_outputs, yolo_outputs

from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.geometry import Letterbox
from dalistream.models.arrays import array_module, to_host
from dalistream.models.faces import Faces
from dalistream.models.kinds import output_decoder
from dalistream.models.retinaface import RetinaFaceDecoder


@pytest.fixture
def cupy(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, module)
    return module


@pytest.fixture(scope="module")
def retinaface_outputs(model_path: Path, sample_clip: Path) -> tuple[dict[str, np.ndarray], list[Letterbox]]:
    tensor, letterboxes = model_input(clip_frames(sample_clip, 13)[::6])
    return OnnxRuntimeEngine(model_path)(tensor), letterboxes


def on_device(cupy: types.ModuleType, outputs: dict[str, np.ndarray]) -> dict[str, object]:
    return {name: cupy.asarray(value) for name, value in outputs.items()}


def assert_same_faces(device: list[Faces], host: list[Faces]) -> None:
    assert len(device) == len(host)
    for image, (got, want) in enumerate(zip(device, host, strict=True)):
        assert type(got.boxes) is np.ndarray, "faces come back to the host"
        np.testing.assert_array_equal(got.scores, want.scores, err_msg=f"image {image}")
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-4, err_msg=f"image {image}")
        np.testing.assert_allclose(got.landmarks, want.landmarks, atol=1e-4, err_msg=f"image {image}")


def test_the_device_form_finds_the_faces_the_host_finds_in_one_transfer(cupy: types.ModuleType, retinaface_outputs) -> None:
    outputs, letterboxes = retinaface_outputs
    decode = output_decoder("retinaface", *INPUT, 0.5, 0.4)
    host = decode(outputs, letterboxes)
    assert sum(len(faces.scores) for faces in host) >= 3
    device_outputs = on_device(cupy, outputs)
    assert array_module(device_outputs["conf"]) is cupy
    assert_same_faces(decode(device_outputs, letterboxes), host)
    assert fake_gpu.device_of(cupy).round_trips == ["get"]  # one transfer, nothing else waited for the device


@pytest.mark.parametrize("kind", ["yolov5face", "scrfd"])
def test_every_kind_decodes_on_the_device_in_one_transfer(cupy: types.ModuleType, kind: str) -> None:
    width, height = 320, 256
    rng = np.random.default_rng(11)
    letterboxes = [Letterbox.fit(w, h, width, height) for w, h in ((1920, 1080), (640, 480), (1000, 1500))]
    if kind == "yolov5face":
        outputs = {"output": yolo_outputs(rng, width, height, len(letterboxes), planted=6)}
    else:
        heads = scrfd_outputs(rng, width, height, len(letterboxes), planted=6)
        outputs = {f"{k}{s}": heads[s][k] for k in ("score", "bbox", "kps") for s in (8, 16, 32)}
    decode = output_decoder(kind, width, height, 0.5, 0.4)
    host = decode(outputs, letterboxes)
    assert all(len(faces.scores) >= 6 for faces in host)
    assert_same_faces(decode(on_device(cupy, outputs), letterboxes), host)
    assert fake_gpu.device_of(cupy).round_trips == ["get"]


def test_more_candidates_than_fit_are_decoded_on_the_host(cupy: types.ModuleType, retinaface_outputs) -> None:
    outputs, letterboxes = retinaface_outputs
    decoder = RetinaFaceDecoder(*INPUT, 0.5, 0.4, device_candidates=4)  # fewer than the anchors above 0.5
    host = decoder(outputs, letterboxes)
    assert_same_faces(decoder(on_device(cupy, outputs), letterboxes), host)
    assert fake_gpu.device_of(cupy).round_trips == ["get"] * (1 + len(outputs))  # the packed faces, then the outputs


def test_nms_passes_that_did_not_settle_are_decoded_on_the_host(cupy: types.ModuleType) -> None:
    # A sliding chain: 0 suppresses 1, so 1 cannot suppress 2; 2 suppresses 3 ... ten boxes.
    decoder = RetinaFaceDecoder(320, 256, 0.5, 0.3, nms_passes=1)
    anchors = decoder.num_priors
    conf = np.zeros((1, anchors, 2), np.float32)
    loc = np.zeros((1, anchors, 4), np.float32)
    chain = np.arange(0, 20, 2)  # 16 px priors of stride 8, two per cell: one cell apart = 8 px, IoU 1/3
    conf[0, chain, 1] = np.linspace(0.99, 0.6, len(chain))
    outputs = {"loc": loc, "conf": conf, "landmarks": np.zeros((1, anchors, 10), np.float32)}
    letterboxes = [Letterbox.fit(320, 256, 320, 256)]
    host = decoder(outputs, letterboxes)
    assert len(host[0].scores) == 5  # every other box of the chain
    assert_same_faces(decoder(on_device(cupy, outputs), letterboxes), host)
    assert fake_gpu.device_of(cupy).round_trips == ["get"] * 4


def test_the_stand_in_refuses_what_cupy_refuses(cupy: types.ModuleType) -> None:
    array = cupy.asarray(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(array)
    with pytest.raises(TypeError, match="Unsupported type"):
        array + np.arange(4.0)
    assert type(np.exp(array)) is fake_gpu.DeviceArray  # NumPy's functions dispatch to the device module, as CuPy's do
    assert int(array.sum()) == 6 and array[array > 1].shape == (2,)
    assert fake_gpu.device_of(cupy).round_trips == ["__int__", "boolean index"]
    assert cupy.cuda.get_current_stream() is cupy.cuda.Stream.null  # CuPy's default stream, never None


def test_host_arrays_are_never_copied(cupy: types.ModuleType) -> None:
    array = np.arange(4)
    assert to_host(array) is array and array_module(array) is np


def test_the_model_input_of_a_scaling_device_graph_comes_back_as_a_host_copy(
    cupy: types.ModuleType, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Detector.tensor`` (stage timing, calibration) on the GPU: the graph scales, so each image
    gets its letterbox, and its device output comes back as NumPy (``np.array`` of a CuPy array
    raises)."""
    from dalistream.config import ModelConfig
    from dalistream.device import CPU_PLAN
    from dalistream.engine.detector import Detector
    from dalistream.engine.preprocess import Preprocessor

    detector = Detector(ModelConfig(onnx=model_path, input=(64, 64)), CPU_PLAN, 2)
    scaling = Preprocessor(64, 64, 2, mean=(0, 0, 0), std=(1, 1, 1), scale=True)  # the GPU graph's code, on NumPy

    class DeviceGraph:
        scale = True

        def __call__(self, images: list, letterboxes: list) -> object:
            return cupy.asarray(scaling(images, letterboxes))

    monkeypatch.setattr(detector, "_graphs", [DeviceGraph()])
    images = [np.full((32, 64, 3), 9, np.uint8), np.full((128, 64, 3), 3, np.uint8)]
    tensor = detector.tensor(images)
    assert type(tensor) is np.ndarray and tensor.shape == (2, 3, 64, 64)
    assert np.all(tensor[0, :, :32] == 9) and np.all(tensor[0, :, 32:] == 0)  # 64x32 fitted, padded below
    assert np.all(tensor[1, :, :, :32] == 3) and np.all(tensor[1, :, :, 32:] == 0)  # 64x128 scaled to 32x64
    assert fake_gpu.device_of(cupy).round_trips == ["get"]
