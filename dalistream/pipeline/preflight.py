"""What is checked before any camera is contacted: the device plan, the model, the clips.

The service and ``check`` both run :func:`preflight`, so a configuration ``check`` accepts
starts, and one it refuses fails the same way at start-up: a :class:`ConfigError` naming the
key, never a traceback.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx

from dalistream.config import CameraConfig, Config, ConfigError
from dalistream.decode import SOURCES
from dalistream.device import CPU, GPU, DevicePlan, GpuFacts, probe_gpu, resolve
from dalistream.engine import ENGINE_SPECS, engine_choice


def model_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the detector: not ONNX, or not one input and some outputs."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not an ONNX model
        return f"{path} is not an ONNX model ({type(exc).__name__}: {exc})"
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        return f"{path}: a detector has one input and some outputs; this model has inputs {inputs} and {len(model.graph.output)} outputs"
    return None


def output_problem(directory: Path) -> str | None:
    """Why records could not be written into ``directory``, or None: it must be a directory we
    can create files in, or one we can create (a file is made and removed to find out)."""
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            return f"{directory} cannot be created: no existing parent"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory" + ("" if existing == directory else f" (it is on the way to {directory})")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".dalistream-probe-"):
            pass
    except OSError as exc:
        what = "cannot be written" if existing == directory else f"cannot be created in {existing}"
        return f"{directory} {what}: {exc.strerror}"
    return None


def check_clip(camera: CameraConfig, key: str) -> None:
    """A ``file://`` camera's clip must exist (checked again for cameras added at run time)."""
    if camera.is_file and not camera.file_path.is_file():
        raise ConfigError(f"{key}.url: no such file {camera.file_path}")


def device_plan(requested: str, probe: Callable[[], GpuFacts] = probe_gpu) -> DevicePlan:
    """``pipeline.device`` resolved against this machine (probed unless "cpu") and this build's stages."""
    facts = None if requested == CPU else probe()
    return resolve(requested, facts, gpu_stages=GPU in SOURCES and any(spec.device == GPU for spec in ENGINE_SPECS.values()))


def preflight(config: Config, probe: Callable[[], GpuFacts] = probe_gpu) -> DevicePlan:
    """Check what can be checked without the network; returns the resolved device plan."""
    if not config.model.onnx.is_file():
        raise ConfigError(f"model.onnx: {config.model.onnx} not found (scripts/setup.sh extracts the default model)")
    if (problem := model_problem(config.model.onnx)) is not None:
        raise ConfigError(f"model.onnx: {problem}")
    for index, camera in enumerate(config.camera):
        check_clip(camera, f"camera[{index}]")
    if (problem := output_problem(config.output.dir)) is not None:
        raise ConfigError(f"output.dir: {problem}")
    config.http.token()  # a token_env that names no variable stops here
    plan = device_plan(config.pipeline.device, probe)
    engine_choice(config.model, plan.device)
    return plan
