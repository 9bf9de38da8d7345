"""Capacity plan: what each camera costs on the resolved device, against what the machine has.

A camera's cost is CPU time per second of video, in cores:

- every frame it sends is received and decoded: ``fps × (megapixels × decode_ms_per_mpixel +
  frame_ms)``, where ``frame_ms`` is the event loop's share (receive, depacketize, dispatch);
- the frames sampled at ``detect_fps`` (at most the stream's rate) are analysed: convert, DALI
  graph, inference, postprocess, record, face tracking — CPU ms per analysed frame for one
  model kind, precision and input size (face crops, written per face rather than per frame, are
  in what the process used beyond the stages, ``unattributed``).

The numbers come from cost tables, in order of preference: the one ``bench`` measured on this
machine (:data:`COSTS_FILE` in :func:`cache_dir`), then the shipped defaults (the README's
measurements). Analysis costs are keyed ``device/kind/precision/WxH``; a measurement never
stands for another device or precision, and where it stands for another input size (scaled by
input pixels) or model kind the plan's ``notes`` say so.

Verdict, on the cores the process may run on:

- ``fits``: the cameras need at most :data:`FITS_SHARE` (80 %) of them, leaving headroom for
  cameras connecting at once, key frames and the event loop;
- ``tight``: at most :data:`TIGHT_SHARE` (100 %): they run by the estimate, but a burst drops frames;
- ``over``: more than the cores: frames will be dropped;
- ``unknown``: no cost model for the device (the plan's ``problem`` says why).

A camera fits when it and the cameras before it (in config order) stay within 80 %; a camera
added at run time is admitted (:func:`admission`) only when it fits beside those running, so a
newcomer never takes the running cameras past the headroom.

The plan itself is pure (:class:`CapacityPlan`, :func:`unit_costs`, :func:`measured_costs`);
reading and writing the tables, probing clips and counting cores are the functions at the end.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import av

from dalistream.cache import cache_dir
from dalistream.config import CameraConfig, Config, ConfigError, ModelConfig
from dalistream.device import GPU, DevicePlan, device_memory
from dalistream.ingest.files import RAW_FORMATS
from dalistream.metrics import StageCost

FITS_SHARE = 0.8  # of the cores: the most the cameras may need for "fits" (and to be admitted)
TIGHT_SHARE = 1.0  # of the cores: the most for "tight"; beyond is "over"
ASSUMED_SIZE = (1920, 1080)  # an RTSP camera (or unreadable clip) without expect_size
ASSUMED_FPS = 25.0  # … without expect_fps
COSTS_FILE = "costs.json"
TABLE_VERSION = 1
SHIPPED = "shipped defaults"
ANALYSIS_STAGES = ("convert", "dali_graph", "inference", "postprocess", "record", "track")  # off the event loop, per analysed frame
LOOP_STAGES = ("receive+depacketize", "write")  # measured on the event loop thread, inside its CPU time
PER_EVENT_STAGES = ("crop",)  # measured per face crop written, on a thread of their own: left in "unattributed"
RESOURCES = {"cpu": "CPU cores", "gpu": "NVDEC engines, GPU memory and inference throughput"}


class CostsMissing(LookupError):
    """No cost table covers this device and precision; the message says which."""


class CostTableError(ConfigError):
    """A cost table file cannot be read as one."""


@dataclass(frozen=True, slots=True)
class CostTable:
    """One cost table: ``decode`` by device, ``analysis`` by ``device/kind/precision/WxH``."""

    source: str
    decode: Mapping[str, Mapping[str, Any]]
    analysis: Mapping[str, Mapping[str, Any]]

    @classmethod
    def parse(cls, data: Any, source: str) -> CostTable:
        if not isinstance(data, dict) or data.get("version") != TABLE_VERSION:
            raise CostTableError(f"{source}: not a version {TABLE_VERSION} cost table")
        return cls(source, data.get("decode", {}), data.get("analysis", {}))


@dataclass(frozen=True, slots=True)
class StreamShape:
    """A camera's stream as the plan sees it. ``size_from`` / ``fps_from`` say where each value
    came from: ``"expect_size"`` / ``"expect_fps"``, ``"probed"`` (a clip, read by PyAV) or
    ``"assumed"``."""

    width: int
    height: int
    fps: float
    size_from: str
    fps_from: str

    @property
    def mpixels(self) -> float:
        return self.width * self.height / 1e6


ASSUMED = StreamShape(*ASSUMED_SIZE, ASSUMED_FPS, "assumed", "assumed")


def stream_shape(camera: CameraConfig, probed: StreamShape | None) -> StreamShape:
    """``camera``'s stream: its ``expect_size`` / ``expect_fps``, else the probed clip's, else assumed."""
    shape = probed or ASSUMED
    if camera.expect_size != (0, 0):
        shape = replace(shape, width=camera.expect_size[0], height=camera.expect_size[1], size_from="expect_size")
    if camera.expect_fps:
        shape = replace(shape, fps=camera.expect_fps, fps_from="expect_fps")
    return shape


@dataclass(frozen=True, slots=True)
class CameraLoad:
    """What one camera asks of the pipeline."""

    camera: str
    shape: StreamShape
    analysed_fps: float


def camera_load(camera: CameraConfig, detect_fps: float, probed: StreamShape | None) -> CameraLoad:
    shape = stream_shape(camera, probed)
    return CameraLoad(camera.id, shape, min(detect_fps, shape.fps))  # the sampler takes every frame of a slow stream


@dataclass(frozen=True, slots=True)
class UnitCosts:
    """CPU ms per unit of work on one device, and where the numbers came from."""

    decode_ms_per_mpixel: float
    frame_ms: float
    analysis_stages_ms: Mapping[str, float]
    analysis_entry: str
    decode_source: str
    analysis_source: str
    notes: tuple[str, ...] = ()

    @property
    def analysis_ms(self) -> float:
        return sum(self.analysis_stages_ms.values())

    def cores(self, load: CameraLoad) -> tuple[float, float]:
        """``load``'s decode and analysis cost, in cores."""
        shape = load.shape
        decode = shape.fps * (shape.mpixels * self.decode_ms_per_mpixel + self.frame_ms) / 1e3
        return decode, load.analysed_fps * self.analysis_ms / 1e3

    def as_dict(self) -> dict[str, Any]:
        return {
            "decode": {"ms_per_mpixel": self.decode_ms_per_mpixel, "ms_per_frame": self.frame_ms, "source": self.decode_source},
            "analysis": {"entry": self.analysis_entry, "ms_per_frame": round(self.analysis_ms, 3),
                         "stages_ms": dict(self.analysis_stages_ms), "source": self.analysis_source},
            "notes": list(self.notes),
        }


def analysis_key(device: str, model: ModelConfig) -> str:
    width, height = model.input
    return f"{device}/{model.kind}/{model.precision}/{width}x{height}"


def unit_costs(tables: Sequence[CostTable], device: str, model: ModelConfig) -> UnitCosts:
    """The costs of ``model`` on ``device`` from ``tables`` (most preferred first).

    Decode: the first table with the device. Analysis: the entry of the model's kind before
    another kind's (noted), then the first table, then the model's input before another
    (scaled by input pixels, noted), then the nearest input. Raises :class:`CostsMissing`
    when no table has the device, or no entry its precision.
    """
    sources = ", ".join(table.source for table in tables)
    decode_table = next((table for table in tables if device in table.decode), None)
    if decode_table is None:
        raise CostsMissing(f"no cost model for the {device} ({RESOURCES[device]}): no cost table ({sources}) holds {device} stage costs")
    width, height = model.input
    wanted = f"{width}x{height}"
    candidates = []
    for rank, table in enumerate(tables):
        for key, entry in table.analysis.items():
            entry_device, kind, precision, size = key.split("/")
            entry_width, entry_height = (int(n) for n in size.split("x"))
            if (entry_device, precision) == (device, model.precision):
                ratio = width * height / (entry_width * entry_height)
                candidates.append(((kind != model.kind, rank, size != wanted, abs(math.log(ratio))), table, key, entry, kind, size, ratio))
    if not candidates:
        raise CostsMissing(f"no {device} {model.precision} analysis costs in the cost tables ({sources})")
    _, table, key, entry, kind, size, ratio = min(candidates, key=lambda candidate: candidate[0])
    notes = []
    if kind != model.kind:
        notes.append(f"no costs for model kind {model.kind}: those of {kind} stand in")
    if size != wanted:
        notes.append(f"analysis measured at {size}, scaled by input pixels to {wanted} (x{ratio:.2f})")
    decode = decode_table.decode[device]
    return UnitCosts(
        decode["ms_per_mpixel"],
        decode["ms_per_frame"],
        {stage: round(ms * ratio, 3) for stage, ms in entry["stages_ms"].items()},
        key,
        _entry_source(decode_table, decode),
        _entry_source(table, entry),
        tuple(notes),
    )


def _entry_source(table: CostTable, entry: Mapping[str, Any]) -> str:
    return f"{table.source}, {entry['measured_at']}" if "measured_at" in entry else table.source


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """Cameras against the machine on one device; ``costs`` is None when there is no cost
    model for the device (then ``problem`` says why and the verdict is ``"unknown"``)."""

    device: str
    cpu_cores: int
    detect_fps: float
    cameras: tuple[CameraLoad, ...]
    costs: UnitCosts | None
    problem: str | None = None

    @property
    def limit(self) -> float:
        """Cores the cameras may need and still fit."""
        return FITS_SHARE * self.cpu_cores

    def cores(self, load: CameraLoad) -> float:
        """``load``'s cost in cores (needs ``costs``)."""
        return sum(self.costs.cores(load))

    @property
    def total(self) -> float:
        """Cores all the cameras need (needs ``costs``)."""
        return sum(self.cores(load) for load in self.cameras)

    @property
    def verdict(self) -> str:
        if self.costs is None:
            return "unknown"
        share = self.total / self.cpu_cores
        return "fits" if share <= FITS_SHARE else "tight" if share <= TIGHT_SHARE else "over"

    @property
    def fitting(self) -> int | None:
        """How many cameras, in config order, fit within the limit (None without a cost model)."""
        if self.costs is None:
            return None
        used = 0.0
        for count, load in enumerate(self.cameras):
            used += self.cores(load)
            if used > self.limit:
                return count
        return len(self.cameras)

    def adding(self, load: CameraLoad) -> CapacityPlan:
        return replace(self, cameras=(*self.cameras, load))

    def admit(self, load: CameraLoad) -> str | None:
        """None when ``load`` fits beside this plan's cameras, else why not. Also None without
        a cost model: there is nothing to judge by (``problem`` says so)."""
        if self.costs is None:
            return None
        need, used = self.cores(load), self.total
        if used + need <= self.limit:
            return None
        return (f"adding {load.camera} needs {need:.2f} cores; {used:.2f} of {self.cpu_cores} are planned for "
                f"{len(self.cameras)} running cameras, and {used + need:.2f} would pass the limit of {self.limit:.2f} "
                f"({100 * FITS_SHARE:.0f} % of the cores; costs: {self.costs.analysis_source})")

    def summary(self) -> str:
        if self.costs is None:
            return f"unknown: {self.problem}"
        return (f"{self.verdict}: {len(self.cameras)} cameras need {self.total:.2f} of {self.cpu_cores} CPU cores "
                f"({100 * self.total / self.cpu_cores:.0f} %); {self.fitting} fit within {100 * FITS_SHARE:.0f} %")

    def as_dict(self) -> dict[str, Any]:
        plan: dict[str, Any] = {"device": self.device, "cpu_cores": self.cpu_cores, "verdict": self.verdict, "summary": self.summary()}
        if self.costs is None:
            plan["problem"] = self.problem
        else:
            plan.update(
                cores_needed=round(self.total, 3),
                used_percent=round(100 * self.total / self.cpu_cores, 1),
                cameras_fit=self.fitting,
                thresholds={"fits": f"<= {100 * FITS_SHARE:.0f} % of the cores", "tight": f"<= {100 * TIGHT_SHARE:.0f} %",
                            "over": f"> {100 * TIGHT_SHARE:.0f} %"},
                costs=self.costs.as_dict(),
            )
        plan["cameras"] = [self._camera(load) for load in self.cameras]
        return plan

    def _camera(self, load: CameraLoad) -> dict[str, Any]:
        shape = load.shape
        entry: dict[str, Any] = {"id": load.camera, "size": [shape.width, shape.height], "size_from": shape.size_from,
                                 "fps": shape.fps, "fps_from": shape.fps_from, "analysed_fps": load.analysed_fps}
        if self.costs is not None:
            decode, analysis = self.costs.cores(load)
            entry.update(cores=round(decode + analysis, 3), decode_cores=round(decode, 3), analysis_cores=round(analysis, 3))
        return entry


def measured_costs(
    stages: Mapping[str, StageCost],
    *,
    process_cpu_s: float,
    loop_cpu_s: float,
    frame_size: tuple[int, int],
    device: str,
    model: ModelConfig,
    measured_at: str,
) -> dict[str, Any] | None:
    """The cost-table entries one run of the pipeline measured (``bench``), or None when it
    analysed nothing.

    ``stages`` are per-thread clocks, blind to the thread pools of ONNX Runtime and DALI: the
    event loop's CPU (``loop_cpu_s``) is spread over the decoded frames, and what the process
    used beyond the loop and the measured stages (those pools, the writer thread, loading the
    model) is put per analysed frame as ``"unattributed"``.
    """
    decoded = stages.get("decode", StageCost()).items
    analysed = stages.get("record", StageCost()).items
    if not decoded or not analysed:
        return None
    width, height = frame_size
    decode = stages["decode"]
    analysis = {name: 1e3 * stages[name].cpu_s / stages[name].items
                for name in ANALYSIS_STAGES if name in stages and stages[name].items}
    seen = loop_cpu_s + sum(cost.cpu_s for name, cost in stages.items() if name not in LOOP_STAGES + PER_EVENT_STAGES)
    analysis["unattributed"] = 1e3 * max(0.0, process_cpu_s - seen) / analysed
    return {
        "decode": {device: {"ms_per_mpixel": round(1e3 * decode.cpu_s / decode.items / (width * height / 1e6), 3),
                            "ms_per_frame": round(1e3 * loop_cpu_s / decoded, 3),
                            "measured_at": measured_at, "note": f"{decoded} frames of {width}x{height}"}},
        "analysis": {analysis_key(device, model): {"stages_ms": {name: round(ms, 3) for name, ms in analysis.items()},
                                                   "measured_at": measured_at, "note": f"{analysed} frames analysed"}},
    }


# The I/O shell: where the tables live, probing clips, counting cores.


def measured_path() -> Path:
    return cache_dir() / COSTS_FILE


def load_tables() -> list[CostTable]:
    """The measured table (when ``bench`` has written one), then the shipped defaults."""
    shipped = resources.files(__package__).joinpath("costs_default.json")
    tables = [CostTable.parse(json.loads(shipped.read_text(encoding="utf-8")), SHIPPED)]
    path = measured_path()
    if path.is_file():
        tables.insert(0, _read_measured(path))
    return tables


def _read_measured(path: Path) -> CostTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CostTableError(f"cost table {path}: {exc} (delete it, or run bench again)") from exc
    return CostTable.parse(data, f"measured by bench ({path})")


def save_measured(entries: Mapping[str, Any]) -> Path:
    """Merge :func:`measured_costs`' entries into the measured table; returns its path."""
    path = measured_path()
    table = _read_measured(path) if path.is_file() else CostTable("", {}, {})
    data = {"version": TABLE_VERSION, "decode": {**table.decode, **entries["decode"]},
            "analysis": {**table.analysis, **entries["analysis"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def probe_clip(path: Path) -> StreamShape | None:
    """A clip's size and frame rate as PyAV reads them; None when it cannot be read."""
    try:
        with av.open(str(path), format=RAW_FORMATS.get(path.suffix.lower())) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            width, height = stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, OSError, IndexError):
        return None
    if not width or not height:
        return None
    return StreamShape(width, height, float(rate) if rate else ASSUMED_FPS, "probed", "probed" if rate else "assumed")


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _probe(camera: CameraConfig, probe: Callable[[Path], StreamShape | None]) -> StreamShape | None:
    return probe(camera.file_path) if camera.is_file else None


def plan_for(
    config: Config,
    device: DevicePlan,
    *,
    tables: Sequence[CostTable] | None = None,
    cpu_cores: int | None = None,
    probe: Callable[[Path], StreamShape | None] = probe_clip,
) -> CapacityPlan:
    """The plan for ``config``'s cameras on ``device`` (tables: :func:`load_tables`; cores:
    :func:`available_cores`; clips probed)."""
    tables = load_tables() if tables is None else tables
    try:
        costs, problem = unit_costs(tables, device.device, config.model), None
    except CostsMissing as exc:
        costs, problem = None, str(exc)
    detect_fps = config.pipeline.detect_fps
    loads = tuple(camera_load(camera, detect_fps, _probe(camera, probe)) for camera in config.camera)
    return CapacityPlan(device.device, cpu_cores or available_cores(), detect_fps, loads, costs, problem)


def admission(
    plan: CapacityPlan, candidate: CameraConfig, probe: Callable[[Path], StreamShape | None] = probe_clip
) -> str | None:
    """None when ``candidate`` fits beside ``plan``'s cameras (or there is no cost model to
    judge by), else the reason it does not; see :meth:`CapacityPlan.admit`."""
    return plan.admit(camera_load(candidate, plan.detect_fps, _probe(candidate, probe)))


@dataclass(frozen=True, slots=True)
class GpuResources:
    """What the GPU offers the cameras: its video decoders and memory (probed, not estimated)."""

    name: str
    nvdec_engines: int
    memory_total_mib: int
    memory_free_mib: int


def gpu_demand(resources: GpuResources, cameras: Sequence[CameraLoad]) -> dict[str, Any]:
    """The camera list against the GPU's NVDEC engines and memory.

    Facts only: every frame of every camera is decoded, so the decoders' load is the streams'
    pixel rate, shown per engine; no GPU cost model is invented to turn it into a verdict
    (``bench`` on the GPU measures what it holds).
    """
    engines = resources.nvdec_engines
    pixel_rate = sum(load.shape.mpixels * load.shape.fps for load in cameras)
    return {
        "gpu": resources.name,
        "nvdec_engines": engines,
        "memory_total_mib": resources.memory_total_mib,
        "memory_free_mib": resources.memory_free_mib,
        "cameras": len(cameras),
        "decode_mpixels_per_s": round(pixel_rate, 1),
        "cameras_per_nvdec": round(len(cameras) / engines, 1) if engines else None,
        "decode_mpixels_per_s_per_nvdec": round(pixel_rate / engines, 1) if engines else None,
    }


def probe_gpu_resources(name: str) -> GpuResources:
    """GPU 0's NVDEC engine count (PyNvVideoCodec's decoder caps) and memory; ``name`` is the
    device plan's."""
    from dalistream.decode.nvdec import decoder_engines

    memory = device_memory(GPU)
    total = memory["gpu_memory_total_mib"]
    return GpuResources(name, decoder_engines(), total, total - memory["gpu_memory_used_mib"])
