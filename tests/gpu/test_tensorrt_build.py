"""The TensorRT INT8 engine build on a GPU, cached (skips without CUDA + TensorRT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHARED_DATA

from dalistream.config import RETINAFACE_INT8_EXCLUDE
from dalistream.engine.quantize import calibration_images
from dalistream.engine.tensorrt import (
    CalibrationBatches,
    EngineBuildError,
    build_engine,
    gpu_identity,
    precision_plan,
    profile_shapes,
)

CALIB = SHARED_DATA / "calib"


@pytest.mark.gpu
def test_gpu_int8_engine_build_is_cached(model_path: Path, tmp_path: Path) -> None:
    try:
        identity = gpu_identity()
    except EngineBuildError as exc:
        pytest.skip(f"no TensorRT GPU build here: {exc}")
    if not any(CALIB.glob("*.jpg")):
        pytest.skip(f"{CALIB} absent: calibration images are research data, not in the repository")
    calibration = CalibrationBatches(calibration_images(CALIB, 8), 4, (640, 384))
    plan = precision_plan("int8", RETINAFACE_INT8_EXCLUDE)
    profile = profile_shapes((1, 4, 8), (640, 384))
    engine = build_engine(model_path, tmp_path, plan=plan, profile=profile, calibration=calibration)
    assert engine.stat().st_size > 0 and identity.tensorrt_version
    assert engine.with_suffix(".calib").is_file() and (tmp_path / "timing.cache").is_file()
    stamp = engine.stat().st_mtime_ns
    assert build_engine(model_path, tmp_path, plan=plan, profile=profile, calibration=calibration) == engine
    assert engine.stat().st_mtime_ns == stamp
    fp16 = build_engine(model_path, tmp_path, plan=precision_plan("fp16"), profile=profile)
    assert fp16 != engine
