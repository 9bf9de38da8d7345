"""TensorRT builder decisions that need no GPU: profile shapes and cache keys.

The builder's calls run on both TensorRT majors' API in ``test_tensorrt_api.py``; the build
itself is ``tests/gpu/test_tensorrt_build.py``, which skips without CUDA + TensorRT.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dalistream.engine.tensorrt import EngineBuildError, ProfileShapes, build_engine, engine_cache_key, profile_shapes


def test_profile_shapes_follow_config_batches_and_input_size() -> None:
    shapes = profile_shapes((1, 4, 8), (960, 544))
    assert shapes == ProfileShapes((1, 3, 544, 960), (4, 3, 544, 960), (8, 3, 544, 960))
    for bad in ((0, 4, 8), (4, 2, 8), (1, 8, 4), (1, 2)):
        with pytest.raises(ValueError, match="profile"):
            profile_shapes(bad, (960, 544))


def test_engine_cache_key_changes_with_every_input() -> None:
    base = dict(
        gpu_name="NVIDIA A10",
        compute_capability=(8, 6),
        tensorrt_version="10.16.1",
        onnx_hash="a" * 64,  # the precision's file: its calibration frames and float layers are in it
        precision="int8",
        profile=profile_shapes((1, 4, 8), (960, 544)),
    )
    changes = dict(
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        tensorrt_version="11.4.0",
        onnx_hash="b" * 64,
        precision="fp16",
        profile=profile_shapes((1, 8, 16), (960, 544)),
    )
    keys = {engine_cache_key(**base)} | {engine_cache_key(**{**base, name: value}) for name, value in changes.items()}
    assert len(keys) == 1 + len(changes)
    assert engine_cache_key(**base) == engine_cache_key(**dict(base))
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key(**{**base, "precision": "int4"})


def test_build_without_tensorrt_says_so(model_path: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the gpu test covers the build")
    with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
        build_engine(model_path, tmp_path, precision="fp16", profile=profile_shapes((1, 1, 1), (320, 192)))
    assert not any(tmp_path.iterdir())
