"""Which device the stages run on: one plan, resolved once at start-up, with its reason.

``pipeline.device = "auto"`` becomes the GPU only when everything the GPU stages need is there:
a CUDA driver that initialises, at least one GPU, the GPU Python packages, and GPU stage
implementations in this build; otherwise the CPU, and the plan says why (``cpu: no CUDA driver
found (libcuda.so.1 cannot be loaded)``). ``"gpu"`` where any of that is missing stops start-up
with a :class:`DeviceError` naming exactly what is missing, before any camera is contacted.

:func:`resolve` is pure (facts in, plan out); :func:`probe_gpu` gathers the facts: the driver
through ``ctypes`` (no CUDA toolkit or Python CUDA package needed to ask) and the packages by
looking them up without importing them.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from dalistream.config import ConfigError

CPU = "cpu"
GPU = "gpu"

# What the GPU stages import, and what to install for it: (modules, any one of which will do; to install).
GPU_PACKAGES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("nvidia.dali",), "nvidia-dali-cuda120 or nvidia-dali-cuda130"),
    (("cupy",), "cupy-cuda12x or cupy-cuda13x"),
    (("PyNvVideoCodec",), "pynvvideocodec"),
    (("tensorrt", "onnx2torch"), "tensorrt, or torch and onnx2torch"),
)
CUDA_SUCCESS = 0
# The driver's libraries NVDEC decoding loads: the decoder itself, and the encoder library that
# PyNvVideoCodec checks the driver's version against even to decode.
VIDEO_LIBRARIES = ("libnvcuvid.so.1", "libnvidia-encode.so.1")


class DeviceError(ConfigError):
    """The configured device cannot be used here; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """What this machine offers the GPU stages."""

    problem: str | None
    """Why no GPU can be used (no driver, no device), or None when one can."""
    gpus: tuple[str, ...] = ()
    """Names of the GPUs the driver sees, by CUDA ordinal."""
    driver: str = ""
    """The CUDA driver's version, e.g. "CUDA 13.0"."""
    missing: tuple[str, ...] = ()
    """GPU Python packages not installed, as pip names."""


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """Where the stages run, and why there."""

    device: str
    """``"cpu"`` or ``"gpu"``."""
    reason: str
    gpu: str | None = None
    """The GPU's name when ``device`` is ``"gpu"``."""

    def __str__(self) -> str:
        return f"{self.device}: {self.reason}"


CPU_PLAN = DevicePlan(CPU, 'requested (pipeline.device = "cpu")')


def resolve(requested: str, facts: GpuFacts | None, *, gpu_stages: bool) -> DevicePlan:
    """The plan for ``pipeline.device = requested``.

    ``facts`` may be None when ``requested`` is ``"cpu"`` (nothing is probed then);
    ``gpu_stages`` says whether this build has GPU implementations of the stages.
    Raises :class:`DeviceError` when ``"gpu"`` is requested and cannot be had.
    """
    if requested == CPU:
        return CPU_PLAN
    if requested not in ("auto", GPU):
        raise ConfigError(f'pipeline.device: must be one of auto, cpu, gpu; got {requested!r}')
    if facts is None:
        raise ValueError("resolving 'auto' or 'gpu' needs the GPU facts")
    problem = _gpu_problem(facts, gpu_stages)
    if problem is None:
        return DevicePlan(GPU, f"{facts.gpus[0]} ({facts.driver} driver)", gpu=facts.gpus[0])
    if requested == GPU:
        raise DeviceError(f'pipeline.device: "gpu" cannot run here: {problem}; use "cpu" or "auto"')
    return DevicePlan(CPU, problem)


def _gpu_problem(facts: GpuFacts, gpu_stages: bool) -> str | None:
    """Everything that stands between this machine and the GPU stages, or None."""
    problems = []
    if facts.problem is not None:
        problems.append(facts.problem)
    elif not facts.gpus:
        problems.append(f"the {facts.driver} driver sees no GPU")
    if facts.missing:
        problems.append(f"GPU packages missing: {', '.join(facts.missing)}")
    if not gpu_stages:
        problems.append("this build has no GPU stages yet (decode, engine)")
    if not problems:
        return None
    if facts.gpus:
        problems[0] = f"{facts.gpus[0]} found, but {problems[0]}"
    return "; ".join(problems)


def _load_driver() -> ctypes.CDLL:
    return ctypes.CDLL("libcuda.so.1")


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def probe_gpu(
    load_driver: Callable[[], ctypes.CDLL] = _load_driver,
    has_module: Callable[[str], bool] = module_available,
    load_library: Callable[[str], object] = ctypes.CDLL,
) -> GpuFacts:
    """Ask the CUDA driver API for its GPUs, check the driver's video libraries load, and look
    up the GPU packages (none is imported)."""
    missing = tuple(package for modules, package in GPU_PACKAGES if not any(has_module(m) for m in modules))
    try:
        cuda = load_driver()
    except OSError as exc:
        return GpuFacts(f"no CUDA driver found ({exc})", missing=missing)
    status = cuda.cuInit(0)
    version = ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    driver = f"CUDA {version.value // 1000}.{version.value % 1000 // 10}"
    if status != CUDA_SUCCESS:
        return GpuFacts(f"the {driver} driver does not initialise ({_error_name(cuda, status)})", driver=driver, missing=missing)
    count = ctypes.c_int(0)
    cuda.cuDeviceGetCount(ctypes.byref(count))
    names = []
    for ordinal in range(count.value):
        device = ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(device), ordinal) == CUDA_SUCCESS:
            cuda.cuDeviceGetName(name, len(name), device)
        names.append(name.value.decode(errors="replace") or f"GPU {ordinal}")
    for library in VIDEO_LIBRARIES:
        try:
            load_library(library)
        except OSError:
            return GpuFacts(
                f"the driver's video library {library} is missing (in a container: NVIDIA_DRIVER_CAPABILITIES needs video)",
                tuple(names), driver, missing,
            )
    return GpuFacts(None, tuple(names), driver, missing)


def _error_name(cuda: ctypes.CDLL, status: int) -> str:
    name = ctypes.c_char_p()
    if cuda.cuGetErrorName(status, ctypes.byref(name)) == CUDA_SUCCESS and name.value:
        return name.value.decode()
    return f"CUresult {status}"



def device_memory(device: str) -> dict[str, int]:
    """Memory in use on the device the stages run on: the GPU's used and total MiB (all of
    its processes, as nvidia-smi counts), or nothing on the CPU (the process metrics carry RSS)."""
    if device != GPU:
        return {}
    import cupy

    free, total = cupy.cuda.runtime.memGetInfo()
    return {"gpu_memory_used_mib": (total - free) >> 20, "gpu_memory_total_mib": total >> 20}
