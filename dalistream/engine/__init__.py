"""Inference engines behind one interface, chosen by ``model.engine`` and the device plan.

An :class:`Engine` maps an NCHW float32 batch to the model's outputs by name. Each engine has
a factory in :data:`ENGINES`, the device it runs on and the precisions it offers in
:data:`ENGINE_SPECS`; :func:`engine_choice` settles which one ``[model]`` gets (and refuses
what cannot run, naming the key), so another engine is one more entry, not a branch in the
callers. On the CPU: ONNX Runtime, FP32 or INT8 QDQ. On the GPU: TensorRT (engines built and
cached by :mod:`.tensorrt`) or PyTorch (:mod:`.torch`), whose outputs stay on the device.

Each precision has one ONNX file, the same on both devices (:func:`model_file`): FP32 is the
source model, FP16 its conversion (:mod:`.float16`), INT8 its Q/DQ quantization (:mod:`.quantize`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dalistream.config import Config, ConfigError, ModelConfig
from dalistream.device import CPU, GPU, DeviceError, module_available
from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.models.kinds import input_convention

if TYPE_CHECKING:  # quantize pulls in onnx and the quantization tools: only load them for INT8
    from dalistream.engine.quantize import QuantizeSettings


class Engine(Protocol):
    """A loaded model: one NCHW float32 batch in, its named outputs out.

    On the CPU both are NumPy arrays; a GPU engine takes host arrays or device arrays (any
    DLPack producer) and returns CuPy arrays. The outputs belong to the caller (nothing the
    engine reuses on its next call). One call at a time.
    """

    def __call__(self, batch: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Where an engine runs, what it needs installed, and at which precisions."""

    device: str
    modules: tuple[str, ...]
    install: str
    precisions: tuple[str, ...]


ENGINE_SPECS: Mapping[str, EngineSpec] = {
    "onnxruntime": EngineSpec(CPU, ("onnxruntime",), "onnxruntime", ("fp32", "int8")),
    "tensorrt": EngineSpec(GPU, ("tensorrt", "cupy"), "tensorrt and cupy-cuda12x", ("fp32", "fp16", "int8")),
    "torch": EngineSpec(GPU, ("torch", "onnx2torch", "cupy"), "torch, onnx2torch and cupy-cuda12x", ("fp32", "fp16")),
}
"""Every engine this build has, by ``model.engine`` name."""


def engine_choice(model: ModelConfig, device: str, has_module: Callable[[str], bool] = module_available) -> str:
    """The engine ``[model]`` runs on ``device``; :class:`ConfigError` naming the key when it cannot.

    ``"auto"`` is ONNX Runtime on the CPU and, on the GPU, TensorRT when it is installed, else
    PyTorch (which has no INT8: INT8 on the GPU needs TensorRT).
    """
    name = model.engine
    if name == "auto":
        on_device = [n for n, spec in ENGINE_SPECS.items() if spec.device == device]
        usable = [n for n in on_device if model.precision in ENGINE_SPECS[n].precisions]
        installed = [n for n in usable if all(has_module(m) for m in ENGINE_SPECS[n].modules)]
        if not usable:
            raise ConfigError(f'model.precision: "{model.precision}" has no {device.upper()} engine; '
                              f"use {' or '.join(_precisions(device))}")
        name = (installed or usable)[0]
    spec = ENGINE_SPECS.get(name)
    if spec is None:
        raise ConfigError(f"model.engine: unknown engine {name!r}; expected auto or one of {', '.join(ENGINE_SPECS)}")
    if spec.device != device:
        raise ConfigError(f'model.engine: "{name}" runs on the {spec.device.upper()}, and the device plan is {device}')
    if model.precision not in spec.precisions:
        others = [n for n, s in ENGINE_SPECS.items() if s.device == device and model.precision in s.precisions]
        hint = f' (model.engine = "{others[0]}" has it)' if others else ""
        raise ConfigError(f'model.precision: "{model.precision}" has no {name} engine; it runs '
                          f"{' or '.join(spec.precisions)}{hint}")
    missing = [m for m in spec.modules if not has_module(m)]
    if missing:
        raise ConfigError(f"model.engine: {name} needs {', '.join(missing)} installed (pip install {spec.install})")
    return name


def _precisions(device: str) -> list[str]:
    return sorted({p for spec in ENGINE_SPECS.values() if spec.device == device for p in spec.precisions})


def quantize_settings(model: ModelConfig) -> QuantizeSettings:
    """The INT8 quantization settings ``[model]`` asks for."""
    from dalistream.engine.quantize import QuantizeSettings

    return QuantizeSettings(
        input_size=model.input,
        convention=input_convention(model.kind),
        calibration=model.calibration,
        exclude=model.int8_exclude,
    )


def model_file(model: ModelConfig, precision: str | None = None) -> Path:
    """The ONNX file ``precision`` (default ``model.precision``) runs, on either device: the source
    model, or its cached FP16 or INT8 version (made first when absent). :class:`ConfigError` when
    it cannot be made."""
    wanted = precision or model.precision
    if wanted not in ("fp16", "int8"):
        return model.onnx
    # Imported here: the quantizer loads onnxruntime.quantization, needed only for these files.
    from dalistream.engine.float16 import Float16Error, cached_fp16_model
    from dalistream.engine.quantize import QuantizationError, cached_int8_model

    try:
        if wanted == "fp16":
            return cached_fp16_model(model.onnx, model.cache_dir)
        return cached_int8_model(model.onnx, model.calib_dir, model.cache_dir, quantize_settings(model))
    except (Float16Error, QuantizationError) as exc:
        raise ConfigError(f"model.precision: {wanted} model cannot be made: {exc}") from exc


def model_files(model: ModelConfig) -> dict[str, dict[str, Any]]:
    """Which ONNX file each precision uses and whether it is made yet (``check``'s report; makes nothing)."""
    from dalistream.engine.float16 import Float16Error, fp16_model_path
    from dalistream.engine.quantize import QuantizationError, int8_model_path

    report: dict[str, dict[str, Any]] = {}
    paths: dict[str, Callable[[], Path]] = {
        "fp32": lambda: model.onnx,
        "fp16": lambda: fp16_model_path(model.onnx, model.cache_dir),
        "int8": lambda: int8_model_path(model.onnx, model.calib_dir, model.cache_dir, quantize_settings(model)),
    }
    for precision, path in paths.items():
        try:
            found = path()
        except (Float16Error, QuantizationError, OSError) as exc:
            report[precision] = {"file": None, "error": str(exc)}
        else:
            report[precision] = {"file": str(found), "made": found.is_file()}
    return report


def _onnxruntime(model: ModelConfig, max_batch: int) -> Engine:
    path = model_file(model)
    if model.precision == "int8":
        import onnx

        from dalistream.engine.quantize import with_uint8_activations

        # The Q/DQ file in TensorRT's form, its activations re-expressed for ONNX Runtime's x86 kernels.
        loaded: Path | bytes = with_uint8_activations(onnx.load(str(path))).SerializeToString()
    else:
        loaded = path
    return OnnxRuntimeEngine(loaded, intra_op_threads=model.intra_op_threads, inter_op_threads=model.inter_op_threads)


def _tensorrt(model: ModelConfig, max_batch: int) -> Engine:
    from dalistream.engine.tensorrt import TensorRtEngine

    return TensorRtEngine(tensorrt_engine_path(model, max_batch))


def _torch(model: ModelConfig, max_batch: int) -> Engine:
    from dalistream.engine.torch import TorchEngine

    return TorchEngine(model.onnx, model.cache_dir, device="cuda", precision=model.precision)


ENGINES: Mapping[str, Callable[[ModelConfig, int], Engine]] = {
    "onnxruntime": _onnxruntime,
    "tensorrt": _tensorrt,
    "torch": _torch,
}
"""Each engine's factory: ``[model]`` and the largest batch it will be given."""


def create_engine(model: ModelConfig, device: str = CPU, max_batch: int = 1) -> Engine:
    """The inference engine for ``[model]`` on ``device`` (see :func:`engine_choice`): on the CPU,
    ONNX Runtime FP32, or INT8 from the quantized-model cache (quantized on first use, about a
    minute for 100 frames); on the GPU, a cached TensorRT engine (built on first use from the
    precision's ONNX file) or PyTorch."""
    if device not in (CPU, GPU):
        raise DeviceError(f"no inference engine for device {device!r} in this build")
    return ENGINES[engine_choice(model, device)](model, max_batch)


def build(config: Config) -> dict[str, str]:
    """Build what ``config``'s device runs: the precision's ONNX file (:func:`model_file`) and, on
    the GPU, the TensorRT engine built from it. Raises :class:`ConfigError` for settings that cannot
    be built and :class:`~dalistream.engine.tensorrt.EngineBuildError` when the GPU build fails."""
    model = config.model
    if not model.onnx.is_file():
        raise ConfigError(f"model.onnx: {model.onnx} not found")
    built = {"device": config.pipeline.device, "precision": model.precision, "model": str(model_file(model))}
    if config.pipeline.device != "gpu":
        return {**built, "device": "cpu"}
    from dalistream.engine.shape import inference_shape

    max_batch = inference_shape(config.pipeline, model, "gpu", 1).max_batch
    return {**built, "engine": str(tensorrt_engine_path(model, max_batch))}


def tensorrt_engine_path(model: ModelConfig, max_batch: int) -> Path:
    """The TensorRT engine for ``[model]`` from its cache, built first when absent (minutes) from
    the precision's ONNX file."""
    from dalistream.engine.tensorrt import build_engine, profile_shapes

    if model.profile[2] < max_batch:
        raise ConfigError(f"model.profile: max batch {model.profile[2]} is below pipeline.max_batch {max_batch}")
    return build_engine(
        model_file(model),
        model.cache_dir,
        precision=model.precision,
        profile=profile_shapes(model.profile, model.input),
    )
