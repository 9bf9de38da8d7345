"""The capacity plan: per-camera cost from the cost tables, the verdict, admission, and the
table ``bench`` stores (written and read back through the real cache directory)."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dalistream.cache import cache_dir
from dalistream.config import ConfigError, ModelConfig, from_mapping
from dalistream.device import CPU_PLAN, DevicePlan
from dalistream.metrics import StageCost
from dalistream.pipeline import capacity
from dalistream.pipeline.capacity import CameraLoad, CostsMissing, CostTable, GpuResources, StreamShape, gpu_demand

# The shipped defaults (README "Capacity plan"): 25 fps × (4.4 ms decode + 0.4 ms event loop) + 5 fps × 34.08 ms analysis.
SHIPPED_CAMERA_CORES = (25 * (1920 * 1080 / 1e6 * 2.12 + 0.4) + 5 * (3.8 + 1.0 + 29.0 + 0.22 + 0.06)) / 1e3


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of the test's own: nothing measured unless the test stores it."""
    monkeypatch.setenv("DALISTREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def site(cameras: int, pipeline: dict | None = None, model: dict | None = None, **camera: object):
    return from_mapping({
        "pipeline": {"device": "cpu", **(pipeline or {})},
        "model": model or {},
        "camera": [{"id": f"cam{i}", "url": f"rtsp://192.0.2.1/{i}", **camera} for i in range(cameras)],
    })


def test_one_camera_fits_and_forty_are_over_with_the_shipped_defaults_marked_as_such():
    one = capacity.plan_for(site(1), CPU_PLAN, cpu_cores=2).as_dict()
    assert one["verdict"] == "fits" and one["cameras_fit"] == 1
    assert one["cores_needed"] == pytest.approx(SHIPPED_CAMERA_CORES, abs=1e-3)
    assert one["costs"]["decode"]["source"] == one["costs"]["analysis"]["source"] == "shipped defaults"
    assert one["costs"]["analysis"]["entry"] == "cpu/retinaface/fp32/960x544" and one["costs"]["notes"] == []
    camera = one["cameras"][0]
    assert (camera["size"], camera["size_from"], camera["fps"], camera["fps_from"]) == ([1920, 1080], "assumed", 25.0, "assumed")
    forty = capacity.plan_for(site(40), CPU_PLAN, cpu_cores=2)
    assert forty.verdict == "over"
    assert forty.fitting == int(0.8 * 2 / SHIPPED_CAMERA_CORES) == 5
    assert forty.summary() == f"over: 40 cameras need {40 * SHIPPED_CAMERA_CORES:.2f} of 2 CPU cores ({2000 * SHIPPED_CAMERA_CORES:.0f} %); 5 fit within 80 %"


@pytest.mark.parametrize(("cameras", "verdict"), [(5, "fits"), (6, "tight"), (7, "over")])
def test_verdict_thresholds(cameras: int, verdict: str):
    # 0.29 cores each, on 2 cores: 5 need 73 % (<= 80 %), 6 need 87 % (<= 100 %), 7 need 102 %.
    assert capacity.plan_for(site(cameras), CPU_PLAN, cpu_cores=2).verdict == verdict


def test_stream_shape_comes_from_the_config_then_the_probe_then_the_assumption():
    probed = StreamShape(1280, 720, 30.0, "probed", "probed")
    config = site(1, expect_size=[3840, 2160])
    assert capacity.stream_shape(config.camera[0], probed) == StreamShape(3840, 2160, 30.0, "expect_size", "probed")
    config = site(1, expect_fps=12.5)
    assert capacity.stream_shape(config.camera[0], None) == StreamShape(1920, 1080, 12.5, "assumed", "expect_fps")
    # A stream slower than detect_fps has every frame analysed, no more.
    plan = capacity.plan_for(site(1, pipeline={"detect_fps": 5.0}, expect_fps=2.0), CPU_PLAN, cpu_cores=2)
    assert plan.cameras[0].analysed_fps == 2.0
    big = capacity.plan_for(site(1, expect_size=[3840, 2160]), CPU_PLAN, cpu_cores=2)
    decode, _ = big.costs.cores(big.cameras[0])
    assert decode == pytest.approx(25 * (3840 * 2160 / 1e6 * 2.12 + 0.4) / 1e3)


def test_a_clip_is_probed_for_its_size_and_rate(tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    assert capacity.probe_clip(clip) == StreamShape(320, 240, 10.0, "probed", "probed")
    assert capacity.probe_clip(tmp_path / "missing.mp4") is None
    config = from_mapping({"camera": [{"id": "clip", "url": clip.as_uri()}]})
    plan = capacity.plan_for(config, CPU_PLAN, cpu_cores=2)
    assert plan.as_dict()["cameras"][0]["size"] == [320, 240]


def test_another_input_size_is_scaled_by_pixels_and_said_so():
    plan = capacity.plan_for(site(1, model={"input": [640, 640]}), CPU_PLAN, cpu_cores=2)
    ratio = 640 * 640 / (960 * 544)
    assert plan.costs.analysis_stages_ms["inference"] == pytest.approx(29.0 * ratio, abs=1e-3)
    assert plan.costs.notes == (f"analysis measured at 960x544, scaled by input pixels to 640x640 (x{ratio:.2f})",)


def test_int8_has_its_own_entry_and_a_precision_never_stands_for_another():
    plan = capacity.plan_for(site(1, model={"precision": "int8"}), CPU_PLAN, cpu_cores=2)
    assert plan.costs.analysis_entry == "cpu/retinaface/int8/960x544"
    assert plan.costs.analysis_stages_ms["inference"] == 21.2
    fp32_only = CostTable("table", {"cpu": {"ms_per_mpixel": 1.0, "ms_per_frame": 0.1}},
                          {"cpu/retinaface/fp32/960x544": {"stages_ms": {"inference": 10.0}}})
    with pytest.raises(CostsMissing, match="no cpu int8 analysis costs in the cost tables \\(table\\)"):
        capacity.unit_costs([fp32_only], "cpu", ModelConfig(precision="int8"))
    costs = capacity.unit_costs([fp32_only], "cpu", ModelConfig(kind="scrfd"))
    assert costs.notes == ("no costs for model kind scrfd: those of retinaface stand in",)


def test_no_gpu_cost_model_is_said_and_admits_without_judging():
    gpu = DevicePlan("gpu", "NVIDIA A10 (CUDA 12.4 driver)", gpu="NVIDIA A10")
    plan = capacity.plan_for(site(3), gpu, cpu_cores=16)
    assert plan.verdict == "unknown" and plan.fitting is None
    report = plan.as_dict()
    assert report["problem"] == ("no cost model for the gpu (NVDEC engines, GPU memory and inference throughput): "
                                 "no cost table (shipped defaults) holds gpu stage costs")
    assert "cores_needed" not in report and "cores" not in report["cameras"][0]
    assert capacity.admission(plan, site(1).camera[0]) is None


def test_admission_refuses_the_camera_that_would_pass_the_limit_with_the_reason():
    running = capacity.plan_for(site(5), CPU_PLAN, cpu_cores=2)
    candidate = dataclasses.replace(site(1).camera[0], id="cam9")
    reason = capacity.admission(running, candidate)
    need, used = SHIPPED_CAMERA_CORES, 5 * SHIPPED_CAMERA_CORES
    assert reason == (f"adding cam9 needs {need:.2f} cores; {used:.2f} of 2 are planned for 5 running cameras, "
                      f"and {used + need:.2f} would pass the limit of 1.60 (80 % of the cores; costs: shipped defaults)")
    assert capacity.admission(capacity.plan_for(site(4), CPU_PLAN, cpu_cores=2), candidate) is None
    # A small stream still fits beside five.
    small = dataclasses.replace(candidate, expect_size=(320, 240), expect_fps=1.0)
    assert capacity.admission(running, small) is None
    assert running.adding(capacity.camera_load(small, 5.0, None)).verdict == "fits"


BENCH_STAGES = {
    "decode": StageCost(items=750, wall_s=4.0, cpu_s=3.0),  # 4 ms per 1080p frame
    "receive+depacketize": StageCost(items=750, wall_s=0.2, cpu_s=0.1),
    "convert": StageCost(items=150, wall_s=0.6, cpu_s=0.45),
    "dali_graph": StageCost(items=158, wall_s=0.3, cpu_s=0.158),
    "inference": StageCost(items=158, wall_s=3.0, cpu_s=2.37),
    "postprocess": StageCost(items=150, wall_s=0.03, cpu_s=0.03),
    "record": StageCost(items=150, wall_s=0.015, cpu_s=0.015),
    "write": StageCost(items=160, wall_s=0.01, cpu_s=0.01),
}


def bench_costs(**overrides: object) -> dict | None:
    arguments = dict(process_cpu_s=10.0, loop_cpu_s=0.6, frame_size=(1920, 1080), device="cpu",
                     model=ModelConfig(), measured_at="2026-01-02T03:04:05+00:00")
    return capacity.measured_costs(BENCH_STAGES, **{**arguments, **overrides})


def test_bench_costs_put_what_thread_clocks_miss_per_analysed_frame():
    costs = bench_costs()
    decode = costs["decode"]["cpu"]
    assert decode["ms_per_mpixel"] == pytest.approx(4.0 / 2.0736, abs=1e-3)
    assert decode["ms_per_frame"] == pytest.approx(0.8)  # the whole event loop, per decoded frame
    stages = costs["analysis"]["cpu/retinaface/fp32/960x544"]["stages_ms"]
    assert stages["convert"] == 3.0 and stages["inference"] == 15.0
    # 10 s of process CPU less the loop's 0.6 s and the 6.023 s the off-loop stages' threads saw.
    assert stages["unattributed"] == pytest.approx(1e3 * (10.0 - 0.6 - 6.023) / 150, abs=1e-3)
    assert bench_costs(process_cpu_s=1.0)["analysis"]["cpu/retinaface/fp32/960x544"]["stages_ms"]["unattributed"] == 0.0
    assert capacity.measured_costs({"decode": BENCH_STAGES["decode"]}, process_cpu_s=1.0, loop_cpu_s=0.1,
                                   frame_size=(1920, 1080), device="cpu", model=ModelConfig(), measured_at="now") is None


def test_a_table_saved_by_bench_is_used_before_the_shipped_one(cache: Path):
    path = capacity.save_measured(bench_costs())
    assert path == cache / "costs.json" and json.loads(path.read_text())["version"] == 1
    plan = capacity.plan_for(site(1), CPU_PLAN, cpu_cores=2)
    source = f"measured by bench ({path}), 2026-01-02T03:04:05+00:00"
    assert plan.costs.decode_source == plan.costs.analysis_source == source
    assert plan.costs.decode_ms_per_mpixel == pytest.approx(1.929, abs=1e-3)
    # The measured 960x544 stands (scaled) for 640x640 on this machine before the shipped entry...
    assert capacity.plan_for(site(1, model={"input": [640, 640]}), CPU_PLAN, cpu_cores=2).costs.analysis_source == source
    # ...but never for another precision: INT8 is still the shipped estimate.
    assert capacity.plan_for(site(1, model={"precision": "int8"}), CPU_PLAN, cpu_cores=2).costs.analysis_source == "shipped defaults"
    # A second run at another input adds its entry beside the first.
    capacity.save_measured(bench_costs(model=ModelConfig(input=(640, 640))))
    assert set(json.loads(path.read_text())["analysis"]) == {"cpu/retinaface/fp32/960x544", "cpu/retinaface/fp32/640x640"}


def test_an_unreadable_table_is_refused_naming_the_file(cache: Path):
    cache.mkdir()
    (cache / "costs.json").write_text("{not json")
    with pytest.raises(ConfigError, match=f"cost table {cache / 'costs.json'}: "):
        capacity.load_tables()


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DALISTREAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dalistream"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dalistream"


@pytest.mark.parametrize(
    ("camera", "pipeline", "message"),
    [
        ({"expect_size": [1920, 0]}, {}, "camera[0].expect_size: [width, height] both > 0, or [0, 0] for unknown; got [1920, 0]"),
        ({"expect_fps": -1}, {}, "camera[0].expect_fps: must be >= 0, got -1.0"),
        ({}, {"admission": "drop"}, "pipeline.admission: must be one of refuse, warn; got 'drop'"),
    ],
)
def test_new_keys_are_validated(camera: dict, pipeline: dict, message: str):
    with pytest.raises(ConfigError) as error:
        site(1, pipeline=pipeline, **camera)
    assert str(error.value) == message


def test_gpu_demand_sets_the_cameras_against_the_decoders_and_memory() -> None:
    a10 = GpuResources("NVIDIA A10", 2, 22_731, 22_000)
    loads = [CameraLoad(f"c{i}", StreamShape(1920, 1080, 25.0, "assumed", "assumed"), 5.0) for i in range(70)]
    demand = gpu_demand(a10, loads)
    assert demand["cameras"] == 70 and demand["cameras_per_nvdec"] == 35.0
    assert demand["decode_mpixels_per_s"] == round(70 * 1920 * 1080 * 25 / 1e6, 1)
    assert demand["decode_mpixels_per_s_per_nvdec"] == round(demand["decode_mpixels_per_s"] / 2, 1)
    assert gpu_demand(GpuResources("x", 0, 1, 1), loads)["cameras_per_nvdec"] is None
