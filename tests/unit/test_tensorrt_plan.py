"""TensorRT builder decisions that need no GPU: profile shapes, precision plan, cache keys, calibration batches.

The build itself is ``tests/gpu/test_tensorrt_build.py``; it skips without CUDA + TensorRT.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA

from dalistream.config import RETINAFACE_INT8_EXCLUDE
from dalistream.engine.quantize import FrameCalibrationReader, calibration_images
from dalistream.engine.tensorrt import (
    CalibrationBatches,
    EngineBuildError,
    PrecisionPlan,
    ProfileShapes,
    build_engine,
    engine_cache_key,
    padded_batches,
    precision_plan,
    profile_shapes,
)

CALIB = SHARED_DATA / "calib"


def test_profile_shapes_follow_config_batches_and_input_size() -> None:
    shapes = profile_shapes((1, 4, 8), (960, 544))
    assert shapes == ProfileShapes((1, 3, 544, 960), (4, 3, 544, 960), (8, 3, 544, 960))
    for bad in ((0, 4, 8), (4, 2, 8), (1, 8, 4), (1, 2)):
        with pytest.raises(ValueError, match="profile"):
            profile_shapes(bad, (960, 544))


def test_precision_plan_pins_excluded_layers_to_fp16_only_for_int8() -> None:
    plan = precision_plan("int8", RETINAFACE_INT8_EXCLUDE)
    assert (plan.int8, plan.fp16, plan.fp16_layers) == (True, True, RETINAFACE_INT8_EXCLUDE)
    assert precision_plan("fp16", RETINAFACE_INT8_EXCLUDE) == PrecisionPlan("fp16", fp16=True, int8=False, fp16_layers=())
    assert precision_plan("fp32") == PrecisionPlan("fp32", fp16=False, int8=False, fp16_layers=())
    with pytest.raises(ValueError, match="precision"):
        precision_plan("int4")


def test_engine_cache_key_changes_with_every_input() -> None:
    base = dict(
        gpu_name="NVIDIA A10",
        compute_capability=(8, 6),
        tensorrt_version="10.3.0",
        onnx_hash="a" * 64,
        plan=precision_plan("int8", RETINAFACE_INT8_EXCLUDE),
        profile=profile_shapes((1, 4, 8), (960, 544)),
        calibration_hash="c" * 64,
    )
    changes = dict(
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        tensorrt_version="10.4.0",
        onnx_hash="b" * 64,
        plan=precision_plan("int8", RETINAFACE_INT8_EXCLUDE[:1]),
        profile=profile_shapes((1, 8, 16), (960, 544)),
        calibration_hash="d" * 64,
    )
    keys = {engine_cache_key(**base)} | {engine_cache_key(**{**base, name: value}) for name, value in changes.items()}
    assert len(keys) == 1 + len(changes)
    assert engine_cache_key(**base) == engine_cache_key(**dict(base))
    # Calibration frames only matter to INT8 engines.
    fp16 = {**base, "plan": precision_plan("fp16")}
    assert engine_cache_key(**fp16) == engine_cache_key(**{**fp16, "calibration_hash": "e" * 64})


def test_padded_batches_are_whole_and_cover_every_item_once_before_padding() -> None:
    assert padded_batches(5, 2) == [(0, 1), (2, 3), (4, 0)]
    assert padded_batches(4, 2) == [(0, 1), (2, 3)]
    assert padded_batches(1, 3) == [(0, 0, 0)]
    for count in range(1, 12):
        for batch in range(1, 6):
            groups = padded_batches(count, batch)
            assert all(len(g) == batch for g in groups)
            flat = [i for g in groups for i in g]
            assert flat[:count] == list(range(count))
    with pytest.raises(ValueError):
        padded_batches(0, 2)


def test_calibration_batches_are_whole_and_match_the_ort_reader() -> None:
    if not any(CALIB.glob("*.jpg")):
        pytest.skip(f"{CALIB} absent: calibration images are research data, not in the repository")
    images = calibration_images(CALIB, 3)
    batches = list(CalibrationBatches(images, 2, (320, 192)))
    assert [b.shape for b in batches] == [(2, 3, 192, 320)] * 2
    reader = FrameCalibrationReader(images, "input", (320, 192), batch=2)
    first, second = reader.get_next()["input"], reader.get_next()["input"]
    np.testing.assert_array_equal(batches[0], first)
    np.testing.assert_array_equal(batches[1][0], second[0])
    np.testing.assert_array_equal(batches[1][1], batches[0][0])  # padded with the first frame
    assert len(list(CalibrationBatches(images, 2, (320, 192)))) == 2  # iterable again


def test_build_without_tensorrt_says_so(model_path: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the gpu test covers the build")
    with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
        build_engine(model_path, tmp_path, plan=precision_plan("fp16"), profile=profile_shapes((1, 1, 1), (320, 192)))
    assert not any(tmp_path.iterdir())
