"""TensorRT engines built from explicit-precision ONNX files: strongly typed, dynamic batch, cached.

The precision is in the ONNX file, not in builder flags (TensorRT 11 has none: no FP16 or INT8
flag, no calibrator; implicit quantization and weakly typed networks are gone). FP32 builds the
source model, FP16 its FP16 conversion (:mod:`.float16`), INT8 its Q/DQ quantization
(:mod:`.quantize`, the same file ONNX Runtime runs on the CPU). Every network is created
``STRONGLY_TYPED``: each tensor keeps the type the file gives it, on TensorRT 10 and 11 alike.

Only :func:`build_engine` and what it calls need a GPU; ``tensorrt`` and ``cupy`` are imported
inside those functions (the tests run :func:`serialize_network` on a stand-in held to the real
API of both majors, ``tests/api``). The decisions it acts on are pure and tested on the CPU:

- :func:`profile_shapes`: the optimization profile (min/opt/max NCHW shapes) from the
  configured batch sizes and input size;
- :func:`engine_cache_key`: GPU name, compute capability, TensorRT version, the ONNX file's
  hash (which carries its precision), precision and profile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dalistream.engine.quantize import file_sha256

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 1 << 30  # builder scratch memory limit


class EngineBuildError(RuntimeError):
    """No TensorRT engine can be built here (no GPU, no TensorRT, or the build failed)."""


@dataclass(frozen=True, slots=True)
class ProfileShapes:
    """One TensorRT optimization profile for the NCHW input."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]


def profile_shapes(profile: Sequence[int], input_size: tuple[int, int]) -> ProfileShapes:
    """Shapes for batch sizes ``profile = (min, opt, max)`` at ``input_size = (width, height)``."""
    if len(profile) != 3:
        raise ValueError(f"profile must be [min, opt, max] batch sizes, got {list(profile)}")
    low, opt, high = profile
    if not 1 <= low <= opt <= high:
        raise ValueError(f"profile batch sizes must satisfy 1 <= min <= opt <= max, got {list(profile)}")
    width, height = input_size
    return ProfileShapes((low, 3, height, width), (opt, 3, height, width), (high, 3, height, width))


def engine_cache_key(
    *,
    gpu_name: str,
    compute_capability: tuple[int, int],
    tensorrt_version: str,
    onnx_hash: str,
    precision: str,
    profile: ProfileShapes,
) -> str:
    """Short stable key of one serialized engine: engines only load on the GPU and version they were
    built for, and the ONNX file's hash covers its precision, calibration frames and float layers."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    plain = {
        "gpu": gpu_name,
        "sm": list(compute_capability),
        "tensorrt": tensorrt_version,
        "onnx": onnx_hash,
        "precision": precision,
        "profile": [list(profile.min), list(profile.opt), list(profile.max)],
        "network": "strongly-typed",
    }
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str


def gpu_identity() -> GpuIdentity:
    """The GPU and TensorRT this process would build for; :class:`EngineBuildError` when there is none."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineBuildError("TensorRT is not installed (pip install tensorrt); use pipeline.device = \"cpu\"") from exc
    try:
        import cupy
    except ImportError as exc:
        raise EngineBuildError("CuPy is not installed (pip install cupy-cuda12x); the engine runs on its arrays") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        raise EngineBuildError(f"no usable CUDA device: {exc}") from exc
    if count < 1:
        raise EngineBuildError("no CUDA device found; use pipeline.device = \"cpu\"")
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return GpuIdentity(name, (int(props["major"]), int(props["minor"])), trt.__version__)


def build_engine(
    onnx_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    precision: str,
    profile: ProfileShapes,
) -> Path:
    """Build (or reuse from ``cache_dir``) the serialized engine of ``onnx_path``; returns its path.

    ``onnx_path`` is the file of ``precision`` (see :func:`dalistream.engine.model_file`); the
    builder's timing cache is shared by all builds in ``cache_dir``.
    """
    identity = gpu_identity()
    key = engine_cache_key(
        gpu_name=identity.name,
        compute_capability=identity.compute_capability,
        tensorrt_version=identity.tensorrt_version,
        onnx_hash=file_sha256(onnx_path),
        precision=precision,
        profile=profile,
    )
    cache_dir = Path(cache_dir)
    engine_path = cache_dir / f"{Path(onnx_path).stem}-{precision}-{key}.engine"
    if engine_path.is_file():
        return engine_path
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing_path = cache_dir / "timing.cache"
    serialized, timing = serialize_network(onnx_path, profile, timing_path.read_bytes() if timing_path.is_file() else b"")
    timing_path.write_bytes(timing)
    partial = engine_path.with_name(engine_path.name + ".partial")
    partial.write_bytes(serialized)
    partial.replace(engine_path)
    return engine_path


def serialize_network(onnx_path: str | os.PathLike[str], profile: ProfileShapes, timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """The serialized engine of ``onnx_path`` as a strongly typed network, and the builder's timing
    cache after the build (``timing_cache`` is the one to start from). No precision flag is set:
    the file's types decide."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    timing = config.create_timing_cache(timing_cache)
    config.set_timing_cache(timing, ignore_mismatch=False)

    optimization = builder.create_optimization_profile()
    optimization.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimization)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path}; see its log above")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


class TensorRtEngine:
    """Runs a serialized engine from :func:`build_engine` (unverified on a GPU: TensorRT could
    not be installed where this was written).

    The input is bound to the caller's device memory where it already is on the GPU (DALI's
    output as a CuPy array: no copy); host input is copied up. Each call sets the batch's
    input shape, binds freshly pooled output buffers (CuPy's memory pool makes that an
    allocation-free reuse, and the outputs stay the caller's), and enqueues the engine with
    ``execute_async_v3`` on the engine's own stream, ordered after the caller's stream by an
    event and before it by another.
    """

    def __init__(self, engine_path: str | os.PathLike[str]) -> None:
        import cupy
        import tensorrt as trt

        self._cupy = cupy
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise EngineBuildError(f"TensorRT cannot load {engine_path} (built by another TensorRT or for another GPU?)")
        self._engine = engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineBuildError(f"{engine_path}: expected one input tensor, found {inputs}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n != self.input_name]
        self._dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))) for name in self.output_names}
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def __call__(self, batch: Any) -> dict[str, Any]:
        cupy = self._cupy
        caller = cupy.cuda.get_current_stream()
        tensor = cupy.ascontiguousarray(cupy.asarray(batch, dtype=cupy.float32))
        context = self._context
        if not context.set_input_shape(self.input_name, tuple(tensor.shape)):
            raise ValueError(f"batch shape {tuple(tensor.shape)} is outside the engine's profile")
        context.set_tensor_address(self.input_name, tensor.data.ptr)
        outputs = {}
        for name in self.output_names:
            dims = context.get_tensor_shape(name)  # a Dims: indexable, not iterable
            outputs[name] = cupy.empty(tuple(dims[i] for i in range(len(dims))), self._dtypes[name])
            context.set_tensor_address(name, outputs[name].data.ptr)
        self.stream.wait_event(caller.record())
        if not context.execute_async_v3(self.stream.ptr):
            raise RuntimeError("TensorRT execute_async_v3 failed; see its log")
        caller.wait_event(self.stream.record())
        return {name: output.astype(cupy.float32, copy=False) for name, output in outputs.items()}
