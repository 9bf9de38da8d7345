"""Inference engines behind one interface, chosen by the device plan.

An :class:`Engine` maps an NCHW float32 batch to the model's outputs by name. Each device has
its engine factory in :data:`ENGINES` (the CPU: ONNX Runtime, FP32 or INT8 QDQ); another engine
is one more factory there, not a branch in the callers. TensorRT engines are built by
:mod:`.tensorrt`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dalistream.config import Config, ConfigError, ModelConfig
from dalistream.device import CPU, DeviceError
from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.models.kinds import input_convention

if TYPE_CHECKING:  # quantize pulls in onnx and the quantization tools: only load them for INT8
    from dalistream.engine.quantize import QuantizeSettings


class Engine(Protocol):
    """A loaded model: one NCHW float32 batch in, its named outputs out.

    The outputs belong to the caller (nothing the engine reuses on its next call). One call
    at a time.
    """

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def quantize_settings(model: ModelConfig) -> QuantizeSettings:
    """The INT8 quantization settings ``[model]`` asks for."""
    from dalistream.engine.quantize import QuantizeSettings

    return QuantizeSettings(
        input_size=model.input,
        convention=input_convention(model.kind),
        calibration=model.calibration,
        exclude=model.int8_exclude,
    )


def cpu_model_path(model: ModelConfig) -> Path:
    """The ONNX file the CPU engine runs: the source model, or its cached INT8 version (built if absent)."""
    match model.precision:
        case "fp32":
            return model.onnx
        case "int8":
            from dalistream.engine.quantize import QuantizationError, cached_int8_model

            try:
                return cached_int8_model(model.onnx, model.calib_dir, model.cache_dir, quantize_settings(model))
            except QuantizationError as exc:
                raise ConfigError(f"model.precision: int8 model cannot be made: {exc}") from exc
        case other:
            raise ConfigError(f'model.precision: "{other}" has no CPU engine; use "fp32" or "int8"')


def _onnxruntime(model: ModelConfig) -> Engine:
    return OnnxRuntimeEngine(
        cpu_model_path(model),
        intra_op_threads=model.intra_op_threads,
        inter_op_threads=model.inter_op_threads,
    )


ENGINES: Mapping[str, Callable[[ModelConfig], Engine]] = {CPU: _onnxruntime}
"""The engine factory for each device this build can infer on."""


def create_engine(model: ModelConfig, device: str = CPU) -> Engine:
    """The inference engine for ``[model]`` on ``device``: on the CPU, ONNX Runtime FP32, or INT8
    from the quantized-model cache (quantized on first use, about a minute for 100 frames)."""
    try:
        factory = ENGINES[device]
    except KeyError:
        raise DeviceError(f"no inference engine for device {device!r} in this build") from None
    return factory(model)


def build(config: Config) -> dict[str, str]:
    """Build what ``config``'s device runs: the cached INT8 (or FP32) model on the CPU, a TensorRT
    engine on the GPU. Raises :class:`ConfigError` for settings that cannot be built and
    :class:`~dalistream.engine.tensorrt.EngineBuildError` when the GPU build fails."""
    model = config.model
    if not model.onnx.is_file():
        raise ConfigError(f"model.onnx: {model.onnx} not found")
    if config.pipeline.device != "gpu":
        return {"device": "cpu", "precision": model.precision, "model": str(cpu_model_path(model))}
    from dalistream.engine.quantize import calibration_images
    from dalistream.engine.tensorrt import CalibrationBatches, build_engine, precision_plan, profile_shapes

    from dalistream.pipeline.shape import inference_shape

    max_batch = inference_shape(config.pipeline, model, "gpu", 1).max_batch
    if model.profile[2] < max_batch:
        raise ConfigError(f"model.profile: max batch {model.profile[2]} is below pipeline.max_batch {max_batch}")
    calibration = None
    if model.precision == "int8":
        settings = quantize_settings(model)
        images = calibration_images(model.calib_dir, settings.max_frames) if model.calib_dir.is_dir() else []
        if not images:
            raise ConfigError(f"model.calib_dir: no calibration frames in {model.calib_dir}")
        calibration = CalibrationBatches(images, model.profile[1], model.input, settings.convention)
    path = build_engine(
        model.onnx,
        model.cache_dir,
        plan=precision_plan(model.precision, model.int8_exclude),
        profile=profile_shapes(model.profile, model.input),
        calibration=calibration,
    )
    return {"device": "gpu", "precision": model.precision, "engine": str(path)}
