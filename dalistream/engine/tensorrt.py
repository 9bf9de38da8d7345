"""TensorRT engine builder: INT8 with entropy calibration, FP16 fallback, dynamic batch, caches.

Only :func:`build_engine` and what it calls need a GPU; ``tensorrt`` and ``cupy`` are imported
inside those functions. The decisions it acts on are pure and tested on the CPU:

- :func:`profile_shapes`: the optimization profile (min/opt/max NCHW shapes) from the
  configured batch sizes and input size;
- :func:`precision_plan`: builder flags and the layers pinned to FP16 (the layers kept out of
  INT8, same names as the ONNX nodes, which the ONNX parser keeps as layer names);
- :class:`CalibrationBatches`: fixed-size preprocessed batches for the calibrator, the last
  one padded with frames from the start of the set (TensorRT asks for whole batches);
- :func:`engine_cache_key`: GPU name, compute capability, TensorRT version, ONNX hash,
  precision and profile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dalistream.engine.quantize import ImageTensors, file_sha256, with_activations
from dalistream.models.convention import InputConvention
from dalistream.models.kinds import RETINAFACE_INPUT

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


@dataclass(frozen=True, slots=True)
class PrecisionPlan:
    """What the builder is told: precision flags and the layers constrained to FP16."""

    precision: str
    fp16: bool  # allow FP16 kernels (INT8 falls back to FP16, not FP32, where INT8 has none)
    int8: bool
    fp16_layers: tuple[str, ...]  # layers kept out of INT8, pinned to FP16 (obeyed, not preferred)


def precision_plan(precision: str, int8_exclude: Sequence[str] = ()) -> PrecisionPlan:
    """The plan for ``precision``; ``int8_exclude`` (layer names) only matters for INT8."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8":
        return PrecisionPlan(precision, fp16=True, int8=True, fp16_layers=tuple(int8_exclude))
    return PrecisionPlan(precision, fp16=precision == "fp16", int8=False, fp16_layers=())


def engine_cache_key(
    *,
    gpu_name: str,
    compute_capability: tuple[int, int],
    tensorrt_version: str,
    onnx_hash: str,
    plan: PrecisionPlan,
    profile: ProfileShapes,
    calibration_hash: str = "",
) -> str:
    """Short stable key of one serialized engine: engines only load on the GPU and version they were built for."""
    plain = {
        "gpu": gpu_name,
        "sm": list(compute_capability),
        "tensorrt": tensorrt_version,
        "onnx": onnx_hash,
        "precision": plan.precision,
        "fp16_layers": list(plan.fp16_layers),
        "profile": [list(profile.min), list(profile.opt), list(profile.max)],
        "calibration": calibration_hash if plan.int8 else "",
    }
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def padded_batches(count: int, batch: int) -> list[tuple[int, ...]]:
    """Indices of ``count`` items in batches of exactly ``batch``; the last is padded from the start."""
    if count < 1 or batch < 1:
        raise ValueError(f"need at least one item and a batch of at least one, got {count} items, batch {batch}")
    groups = []
    for start in range(0, count, batch):
        indices = list(range(start, min(start + batch, count)))
        indices += [i % count for i in range(batch - len(indices))]
        groups.append(tuple(indices))
    return groups


class CalibrationBatches:
    """Preprocessed NCHW float32 batches of exactly ``batch`` frames, for the INT8 calibrator.

    Frames go through the live preprocessing (:class:`dalistream.engine.quantize.ImageTensors`).
    Iterating again starts over.
    """

    def __init__(
        self,
        images: Sequence[Path],
        batch: int,
        input_size: tuple[int, int],
        convention: InputConvention = RETINAFACE_INPUT,
    ) -> None:
        self.images = list(images)
        self.batch = batch
        self.input_size = input_size
        self.convention = convention
        self.groups = padded_batches(len(self.images), batch)

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[np.ndarray]:
        tensors = ImageTensors(self.input_size, self.convention, self.batch)
        for group in self.groups:
            yield tensors([self.images[i] for i in group])


def make_entropy_calibrator(batches: CalibrationBatches, cache_path: Path) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` reading ``batches`` (GPU; imports TensorRT and CuPy)."""
    import cupy
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._device: Any = None  # keeps the current batch alive on the GPU

        def get_batch_size(self) -> int:
            return batches.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            host = next(self._batches, None)
            if host is None:
                return None
            self._device = cupy.asarray(host)
            return [int(self._device.data.ptr)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


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
        raise EngineBuildError("CuPy is not installed (pip install cupy-cuda12x); it feeds the INT8 calibrator") from exc
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
    plan: PrecisionPlan,
    profile: ProfileShapes,
    calibration: CalibrationBatches | None = None,
) -> Path:
    """Build (or reuse from ``cache_dir``) a serialized engine; returns its path.

    INT8 needs ``calibration``; its scales are cached beside the engine (``*.calib``) and the
    builder's timing cache is shared by all builds in ``cache_dir``.
    """
    identity = gpu_identity()
    import tensorrt as trt

    if plan.int8 and calibration is None:
        raise EngineBuildError("INT8 needs calibration frames (python -m dalistream calibrate)")
    calibration_hash = ""
    if plan.int8 and calibration is not None:
        digest = hashlib.sha256(repr((calibration.batch, calibration.convention)).encode())
        for image in calibration.images:
            digest.update(bytes.fromhex(file_sha256(image)))
        calibration_hash = digest.hexdigest()
    key = engine_cache_key(
        gpu_name=identity.name,
        compute_capability=identity.compute_capability,
        tensorrt_version=identity.tensorrt_version,
        onnx_hash=file_sha256(onnx_path),
        plan=plan,
        profile=profile,
        calibration_hash=calibration_hash,
    )
    cache_dir = Path(cache_dir)
    engine_path = cache_dir / f"{Path(onnx_path).stem}-{plan.precision}-{key}.engine"
    if engine_path.is_file():
        return engine_path
    cache_dir.mkdir(parents=True, exist_ok=True)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    timing_path = cache_dir / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)

    input_name = network.get_input(0).name
    optimization = builder.create_optimization_profile()
    optimization.set_shape(input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimization)

    if plan.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        calibration_profile = builder.create_optimization_profile()
        batch_shape = (calibration.batch, *profile.opt[1:])
        calibration_profile.set_shape(input_name, batch_shape, batch_shape, batch_shape)
        config.set_calibration_profile(calibration_profile)
        config.int8_calibrator = make_entropy_calibrator(calibration, engine_path.with_suffix(".calib"))
        layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
        missing = [name for name in plan.fp16_layers if name not in layers]
        if missing:
            raise EngineBuildError(f"layers to keep out of INT8 not in the network: {', '.join(missing)}")
        # As on the CPU, a layer kept out of INT8 takes its activation along.
        pinned = [name for name in with_activations(onnx.load(str(onnx_path)).graph, plan.fp16_layers) if name in layers]
        for name in pinned:
            layers[name].precision = trt.float16
            for index in range(layers[name].num_outputs):
                layers[name].set_output_type(index, trt.float16)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path} ({plan.precision}); see its log above")
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    partial = engine_path.with_name(engine_path.name + ".partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)
    return engine_path


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
        self._trt = trt
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
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            outputs[name] = cupy.empty(tuple(context.get_tensor_shape(name)), dtype)
            context.set_tensor_address(name, outputs[name].data.ptr)
        self.stream.wait_event(caller.record())
        if not context.execute_async_v3(self.stream.ptr):
            raise RuntimeError("TensorRT execute_async_v3 failed; see its log")
        caller.wait_event(self.stream.record())
        return {name: output.astype(cupy.float32, copy=False) for name, output in outputs.items()}
