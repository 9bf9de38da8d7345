"""The PyTorch engine on the CPU against ONNX Runtime: same output names, same numbers (FP32),
its cached "basic" ONNX made once, and the precisions it refuses (torch and onnx2torch come with
``scripts/setup.sh --test``; the GPU half is tests/gpu/test_gpu_stages.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import require_module
from model_inputs import clip_frames, model_input

from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.engine.torch import TorchEngine

TOLERANCE = 1e-3  # max abs difference of any output value, FP32 against FP32


@pytest.fixture(scope="module", autouse=True)
def torch_installed() -> None:
    for module in ("torch", "onnx2torch"):
        require_module(module, "run scripts/setup.sh --test (the torch-cpu extra)")


@pytest.fixture(scope="module")
def batch(sample_clip: Path) -> np.ndarray:
    """Two real frames of the sample clip, half a second apart."""
    frames = clip_frames(sample_clip, 13)
    return model_input([frames[0], frames[12]])[0]


def test_cpu_fp32_matches_onnxruntime(model_path: Path, batch: np.ndarray, tmp_path: Path) -> None:
    engine = TorchEngine(model_path, tmp_path, device="cpu", precision="fp32")
    expected = OnnxRuntimeEngine(model_path)(batch)
    got = engine(batch)
    assert list(got) == list(expected)  # the same names, in the model's order
    assert expected["conf"][..., 1].max() > 0.9, "no face in the frames: the comparison would prove little"
    for name, want in expected.items():
        assert isinstance(got[name], np.ndarray) and got[name].dtype == np.float32, (name, type(got[name]))
        assert got[name].shape == want.shape, (name, got[name].shape, want.shape)
        difference = float(np.abs(got[name] - want).max())
        assert difference <= TOLERANCE, f"{name}: max abs difference {difference:.2e} > {TOLERANCE:g}"


def test_the_basic_onnx_is_made_once(model_path: Path, tmp_path: Path) -> None:
    TorchEngine(model_path, tmp_path, device="cpu", precision="fp32")
    (basic,) = tmp_path.glob("*.onnx")
    assert "-basic-" in basic.name and not list(tmp_path.glob("*.partial")), sorted(tmp_path.iterdir())
    stamp = basic.stat().st_mtime_ns
    TorchEngine(model_path, tmp_path, device="cpu", precision="fp32")
    assert list(tmp_path.glob("*.onnx")) == [basic]
    assert basic.stat().st_mtime_ns == stamp, "the cached basic ONNX was made again"


def test_fp16_on_the_cpu_is_refused_before_anything_is_built(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16"):
        TorchEngine(model_path, tmp_path, device="cpu", precision="fp16")
    assert not list(tmp_path.iterdir())


def test_int8_is_refused(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int8"):
        TorchEngine(model_path, tmp_path, device="cpu", precision="int8")
    assert not list(tmp_path.iterdir())
