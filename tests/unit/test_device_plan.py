"""The device plan: "auto" resolved once from what the machine and the build offer, with its reason.

Here no CUDA driver exists, so the probe is tested for real on that side; a driver that is
present is a fake object answering the driver API calls (no real one can run here).
"""

from __future__ import annotations

import ctypes

import pytest

from dalistream.config import ConfigError, from_mapping
from dalistream.device import CPU_PLAN, DeviceError, GpuFacts, probe_gpu, resolve
from dalistream.pipeline.preflight import preflight

NO_DRIVER = GpuFacts("no CUDA driver found (libcuda.so.1: cannot open shared object file)", missing=("pynvvideocodec",))
READY = GpuFacts(None, ("NVIDIA A10", "NVIDIA A10"), "CUDA 12.4")


def test_cpu_is_taken_as_asked_without_probing() -> None:
    assert resolve("cpu", None, gpu_stages=True) == CPU_PLAN
    assert str(CPU_PLAN) == 'cpu: requested (pipeline.device = "cpu")'


def test_auto_without_a_driver_runs_on_the_cpu_and_says_why() -> None:
    plan = resolve("auto", NO_DRIVER, gpu_stages=True)
    assert plan.device == "cpu" and plan.gpu is None
    assert str(plan) == "cpu: no CUDA driver found (libcuda.so.1: cannot open shared object file); GPU packages missing: pynvvideocodec"


def test_auto_takes_a_ready_gpu() -> None:
    plan = resolve("auto", READY, gpu_stages=True)
    assert (plan.device, plan.gpu, str(plan)) == ("gpu", "NVIDIA A10", "gpu: NVIDIA A10 (CUDA 12.4 driver)")


@pytest.mark.parametrize(
    ("facts", "gpu_stages", "reason"),
    [
        (GpuFacts(None, (), "CUDA 12.4"), True, "the CUDA 12.4 driver sees no GPU"),
        (GpuFacts(None, ("NVIDIA L4",), "CUDA 12.4", ("cupy-cuda12x or cupy-cuda13x",)), True,
         "NVIDIA L4 found, but GPU packages missing: cupy-cuda12x or cupy-cuda13x"),
        (READY, False, "NVIDIA A10 found, but this build has no GPU stages yet (decode, engine)"),
    ],
)
def test_each_missing_piece_keeps_auto_on_the_cpu_and_refuses_gpu(facts: GpuFacts, gpu_stages: bool, reason: str) -> None:
    plan = resolve("auto", facts, gpu_stages=gpu_stages)
    assert (plan.device, plan.reason) == ("cpu", reason)
    with pytest.raises(DeviceError) as refused:
        resolve("gpu", facts, gpu_stages=gpu_stages)
    assert str(refused.value) == f'pipeline.device: "gpu" cannot run here: {reason}; use "cpu" or "auto"'


def test_the_real_probe_without_a_driver() -> None:
    facts = probe_gpu()
    if facts.problem is None:
        pytest.skip(f"a CUDA driver is present here: {facts}")
    assert facts.problem.startswith("no CUDA driver found (") or "does not initialise" in facts.problem
    assert resolve("auto", facts, gpu_stages=True).device == "cpu"


class FakeDriver:
    """Answers the CUDA driver API calls probe_gpu makes, as libcuda.so.1 would."""

    def __init__(self, init_status: int, names: list[str]) -> None:
        self.init_status = init_status
        self.names = names

    def cuInit(self, flags: int) -> int:
        return self.init_status

    def cuDriverGetVersion(self, version) -> int:
        version._obj.value = 12040
        return 0

    def cuDeviceGetCount(self, count) -> int:
        count._obj.value = len(self.names)
        return 0

    def cuDeviceGet(self, device, ordinal: int) -> int:
        device._obj.value = ordinal
        return 0

    def cuDeviceGetName(self, buffer, size: int, device: ctypes.c_int) -> int:
        buffer.value = self.names[device.value].encode()
        return 0

    def cuGetErrorName(self, status: int, name) -> int:
        name._obj.value = {100: b"CUDA_ERROR_NO_DEVICE"}[status]
        return 0


def test_probe_reads_the_driver_s_gpus_and_the_missing_packages() -> None:
    facts = probe_gpu(lambda: FakeDriver(0, ["NVIDIA A10", "NVIDIA L4"]), lambda name: name not in ("cupy", "onnx2torch", "tensorrt"),
                      lambda library: None)
    assert facts == GpuFacts(None, ("NVIDIA A10", "NVIDIA L4"), "CUDA 12.4", ("cupy-cuda12x or cupy-cuda13x", "tensorrt, or torch and onnx2torch"))
    facts = probe_gpu(lambda: FakeDriver(100, []), lambda name: True, lambda library: None)
    assert facts == GpuFacts("the CUDA 12.4 driver does not initialise (CUDA_ERROR_NO_DEVICE)", (), "CUDA 12.4", ())


def test_preflight_refuses_gpu_before_any_camera(model_path) -> None:
    # TensorRT named: "auto" would pick the torch engine, which the tests' torch-cpu extra installs
    config = from_mapping({"pipeline": {"device": "gpu"}, "model": {"onnx": str(model_path), "engine": "tensorrt"},
                           "camera": [{"id": "a", "url": "rtsp://192.0.2.1/x"}]})
    with pytest.raises(DeviceError, match='"gpu" cannot run here: no CUDA driver found'):
        preflight(config, probe=lambda: NO_DRIVER)
    # A GPU the probe calls ready gets as far as the engine, which needs its packages really installed.
    with pytest.raises(ConfigError, match="model.engine: tensorrt needs tensorrt(, cupy)? installed"):
        preflight(config, probe=lambda: READY)


def test_a_driver_without_its_video_libraries_is_no_gpu_for_the_stages() -> None:
    def only_compute(library: str) -> None:
        if library == "libnvcuvid.so.1":
            raise OSError(f"{library}: cannot open shared object file")

    facts = probe_gpu(lambda: FakeDriver(0, ["NVIDIA A10"]), lambda name: True, only_compute)
    assert facts.gpus == ("NVIDIA A10",)
    assert facts.problem == "the driver's video library libnvcuvid.so.1 is missing (in a container: NVIDIA_DRIVER_CAPABILITIES needs video)"
    assert resolve("auto", facts, gpu_stages=True).reason.startswith("NVIDIA A10 found, but the driver's video library")
