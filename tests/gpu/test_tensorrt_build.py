"""TensorRT engines from the explicit-precision ONNX files on a GPU, cached (skips without CUDA + TensorRT)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import require

from dalistream.config import ModelConfig
from dalistream.engine import model_file
from dalistream.engine.tensorrt import EngineBuildError, build_engine, gpu_identity, profile_shapes


@pytest.mark.gpu
def test_gpu_engines_build_strongly_typed_from_each_precisions_file_and_are_cached(model_path: Path, calib_dir: Path, tmp_path: Path) -> None:
    try:
        identity = gpu_identity()
    except EngineBuildError as exc:
        require(False, f"no TensorRT GPU build here: {exc}")
    model = ModelConfig(onnx=model_path, input=(640, 384), calib_dir=calib_dir, cache_dir=tmp_path)
    profile = profile_shapes((1, 4, 8), (640, 384))
    engines = {}
    for precision in ("int8", "fp16"):
        source = model_file(dataclasses.replace(model, precision=precision))
        engines[precision] = build_engine(source, tmp_path, precision=precision, profile=profile)
        assert engines[precision].stat().st_size > 0 and identity.tensorrt_version
        stamp = engines[precision].stat().st_mtime_ns
        assert build_engine(source, tmp_path, precision=precision, profile=profile) == engines[precision]
        assert engines[precision].stat().st_mtime_ns == stamp
    assert engines["int8"] != engines["fp16"] and (tmp_path / "timing.cache").is_file()
