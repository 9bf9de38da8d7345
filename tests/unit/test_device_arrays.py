"""The face decoder's device branch (what runs on CuPy arrays) on a NumPy-backed stand-in for
CuPy: no GPU here, so this checks the branch's logic (dispatch, matrix NMS, priors on the
device, the kept faces copied back), not CuPy itself (tests/gpu does that)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import fake_gpu
from fake_gpu import DeviceArray
from model_inputs import INPUT, clip_frames, model_input

from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.models.arrays import array_module, to_host
from dalistream.models.kinds import output_decoder


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, module)
    return module


def test_the_device_branch_finds_the_faces_the_host_finds(fake_cupy: types.ModuleType, model_path: Path, sample_clip: Path) -> None:
    tensor, letterboxes = model_input(clip_frames(sample_clip, 13)[::6])
    outputs = OnnxRuntimeEngine(model_path)(tensor)
    decode = output_decoder("retinaface", *INPUT, 0.5, 0.4)
    on_host = decode(outputs, letterboxes)
    on_device_outputs = {name: fake_cupy.asarray(value) for name, value in outputs.items()}
    assert array_module(on_device_outputs["conf"]) is fake_cupy
    on_device = decode(on_device_outputs, letterboxes)
    assert sum(len(faces.scores) for faces in on_host) >= 3
    for host, device in zip(on_host, on_device, strict=True):
        assert type(device.boxes) is np.ndarray  # faces come back to the host
        np.testing.assert_allclose(device.boxes, host.boxes, atol=1e-4)
        np.testing.assert_array_equal(device.scores, host.scores)
        np.testing.assert_allclose(device.landmarks, host.landmarks, atol=1e-4)
    assert DeviceArray.copies_to_host > 0  # the kept faces were copied back (how many arrays: NumPy's subclassing decides)


def test_host_arrays_are_never_copied(fake_cupy: types.ModuleType) -> None:
    array = np.arange(4)
    assert to_host(array) is array and array_module(array) is np
