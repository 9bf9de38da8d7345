"""The GPU stages against their CPU counterparts, on the sample clip: NMS and the face decoder on
CuPy arrays, the torch and TensorRT engines in FP16, the DALI GPU letterbox, NVDEC and dali-gop
decoding, and the service end to end on the GPU (each skips, saying why, without CUDA or the
package it needs)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import require
from model_inputs import INPUT, clip_frames, clip_units, model_input
from pipeline_runs import run_pipeline

from dalistream.decode import FrameSpec, StreamStart
from dalistream.decode.pyav import PyAvDecoder
from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.models.arrays import to_host
from dalistream.models.kinds import RETINAFACE_INPUT, output_decoder
from dalistream.models.nms import fixed_nms
from dalistream.tools.demo import demo_config, summarize
from dalistream.tools.groundtruth import ClipTruth, iou_matrix

pytestmark = pytest.mark.gpu

SCORE_THRESHOLD, NMS_IOU = 0.5, 0.4  # the default model.score_threshold and model.nms_iou


def cuda() -> ModuleType:
    """CuPy with at least one CUDA device, or skip saying what is missing."""
    cupy = need("cupy", "cupy-cuda12x or cupy-cuda13x")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        require(False, f"no CUDA device: {exc}")
    require(count > 0, "no CUDA device")
    return cupy


def need(module: str, install: str) -> ModuleType:
    """``module`` imported, or skip when it is not installed or the driver lacks a library it
    loads (PyNvVideoCodec needs the driver's video libraries, libnvcuvid and libnvidia-encode).
    One that is there but fails to import for want of a Python module fails the test: a broken
    install must not pass as skipped."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        found = False
    require(found, f"{module} not installed (pip install {install})")
    try:
        return importlib.import_module(module)
    except (OSError, RuntimeError) as exc:
        require(False, f"{module} is installed but cannot load its driver libraries: {str(exc).strip().splitlines()[0]}")


@pytest.fixture(scope="module")
def frames(sample_clip: Path) -> list:
    """Four frames of the sample clip, a quarter of a second apart."""
    return clip_frames(sample_clip, 19)[::6]


def test_nms_on_cupy_keeps_what_numpy_keeps() -> None:
    cupy = cuda()
    rng = np.random.default_rng(7)
    for trial in range(20):
        count = int(rng.integers(1, 400))
        corners = rng.uniform(0, 200, (2, count, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(2, 60, (2, count, 2))], axis=2)  # dense: many overlaps
        valid = rng.random((2, count)) < 0.9
        for iou in (0.3, 0.5):
            want, settled = fixed_nms(boxes, valid, iou, passes=count)
            got, got_settled = fixed_nms(cupy.asarray(boxes), cupy.asarray(valid), iou, passes=count)
            assert type(got).__module__.startswith("cupy"), f"fixed_nms returned a {type(got)} for CuPy input"
            np.testing.assert_array_equal(to_host(got), want, err_msg=f"fixed_nms, trial {trial}, iou {iou}")
            assert settled.all() and to_host(got_settled).all()


def test_retinaface_decoder_on_cupy_outputs_finds_the_same_faces(model_path: Path, frames: list) -> None:
    cupy = cuda()
    tensor, letterboxes = model_input(frames)
    outputs = OnnxRuntimeEngine(model_path)(tensor)
    decode = output_decoder("retinaface", *INPUT, SCORE_THRESHOLD, NMS_IOU)
    want = decode(outputs, letterboxes)
    got = decode({name: cupy.asarray(value) for name, value in outputs.items()}, letterboxes)
    assert sum(len(faces.scores) for faces in want) >= len(frames), "too few faces for the comparison to mean much"
    for i, (cpu, gpu) in enumerate(zip(want, got, strict=True)):
        assert len(gpu.scores) == len(cpu.scores), f"image {i}: {len(gpu.scores)} faces on the GPU, {len(cpu.scores)} on the CPU"
        np.testing.assert_allclose(to_host(gpu.boxes), cpu.boxes, atol=1e-3, err_msg=f"image {i} boxes")
        np.testing.assert_allclose(to_host(gpu.scores), cpu.scores, atol=1e-5, err_msg=f"image {i} scores")
        np.testing.assert_allclose(to_host(gpu.landmarks), cpu.landmarks, atol=1e-3, err_msg=f"image {i} landmarks")


def test_torch_fp16_on_cuda_finds_the_faces_onnxruntime_finds(model_path: Path, frames: list, tmp_path: Path) -> None:
    cupy = cuda()
    need("torch", "torch")
    need("onnx2torch", "onnx2torch")
    from dalistream.engine.torch import TorchEngine

    tensor, letterboxes = model_input(frames)
    decode = output_decoder("retinaface", *INPUT, SCORE_THRESHOLD, NMS_IOU)
    want = decode(OnnxRuntimeEngine(model_path)(tensor), letterboxes)
    outputs = TorchEngine(model_path, tmp_path, device="cuda", precision="fp16")(cupy.asarray(tensor))
    assert all(type(value).__module__.startswith("cupy") and value.dtype == np.float32 for value in outputs.values()), \
        {name: (type(value), value.dtype) for name, value in outputs.items()}
    assert_same_faces(want, decode(outputs, letterboxes), "torch FP16")


def test_tensorrt_fp16_finds_the_faces_onnxruntime_finds(model_path: Path, frames: list, tmp_path: Path) -> None:
    cupy = cuda()
    need("tensorrt", "tensorrt")
    from dalistream.engine.float16 import cached_fp16_model
    from dalistream.engine.tensorrt import TensorRtEngine, build_engine, profile_shapes

    tensor, letterboxes = model_input(frames)
    decode = output_decoder("retinaface", *INPUT, SCORE_THRESHOLD, NMS_IOU)
    want = decode(OnnxRuntimeEngine(model_path)(tensor), letterboxes)
    fp16 = cached_fp16_model(model_path, tmp_path)  # FP16 by the file's types: the network is strongly typed
    engine = build_engine(fp16, tmp_path, precision="fp16", profile=profile_shapes((1, 4, 8), INPUT))
    outputs = TensorRtEngine(engine)(cupy.asarray(tensor))
    assert all(type(value).__module__.startswith("cupy") for value in outputs.values()), outputs.keys()
    assert_same_faces(want, decode(outputs, letterboxes), "TensorRT FP16")


def test_the_pipelined_gpu_detector_gives_each_batch_its_own_faces(model_path: Path, frames: list, tmp_path: Path) -> None:
    """One GPU detector, two input buffers, three threads (the service's GPU shape): each
    batch's faces are the ones it gets alone, and each stage's stream was busy."""
    from concurrent.futures import ThreadPoolExecutor

    from dalistream.config import ModelConfig
    from dalistream.device import DevicePlan
    from dalistream.engine.detector import Detector

    cupy = cuda()
    need("nvidia.dali", "nvidia-dali-cuda130")
    need("torch", "torch")
    need("onnx2torch", "onnx2torch")
    model = ModelConfig(onnx=model_path, engine="torch", precision="fp16", cache_dir=tmp_path)
    detector = Detector(model, DevicePlan("gpu", "test"), 2, buffers=2)
    detector.warm_up()
    letterboxes = [Letterbox.fit(frame.width, frame.height, *INPUT) for frame in frames]
    images = [cupy.asarray(PyAvDecoder.convert(frame, box, "bgr24")) for frame, box in zip(frames, letterboxes)]
    batches = [[images[i], images[(i + 1) % len(images)]] for i in range(len(images))] * 6
    boxes = [[letterboxes[i], letterboxes[(i + 1) % len(images)]] for i in range(len(images))] * 6
    alone = [detector(batch, box) for batch, box in zip(batches, boxes)]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(detector, batches, boxes))
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(to_host(x.boxes), to_host(y.boxes), err_msg=f"batch {i}")
    busy = detector.streams.busy_ms()
    assert set(busy) == {"preprocess", "inference", "postprocess"} and min(busy.values()) > 0, busy


def assert_same_faces(want: list, got: list, what: str) -> None:
    """Every clear face (score >= 0.6) of either side is found by the other at IoU >= 0.9; faces
    near the threshold may fall either side of it in FP16."""
    for i, (cpu, gpu) in enumerate(zip(want, got, strict=True)):
        cpu_boxes, gpu_boxes = to_host(cpu.boxes), to_host(gpu.boxes)
        assert len(cpu_boxes) >= 1 and len(gpu_boxes) >= 1, f"image {i}: {len(cpu_boxes)} faces in FP32, {len(gpu_boxes)} in {what}"
        iou = iou_matrix(cpu_boxes.astype(np.float64), gpu_boxes.astype(np.float64))
        clear_cpu, clear_gpu = to_host(cpu.scores) >= 0.6, to_host(gpu.scores) >= 0.6
        assert (iou.max(axis=1)[clear_cpu] >= 0.9).all(), f"image {i}: FP32 faces lost in {what}: IoU {iou.max(axis=1)}"
        assert (iou.max(axis=0)[clear_gpu] >= 0.9).all(), f"image {i}: {what} faces not in FP32: IoU {iou.max(axis=0)}"


def test_dali_gpu_letterbox_matches_the_cpu_one(frames: list) -> None:
    """The same graph on both devices, scaling full-size frames itself (on the CPU that path is
    tested against swscale in tests/unit/test_preprocess.py): pixel values within 2 of 255
    before normalisation, and the padding exactly the mean colour (zero after normalising)."""
    cupy = cuda()
    need("nvidia.dali", "nvidia-dali-cuda130")
    from dalistream.engine.preprocess import Preprocessor

    width, height = INPUT
    convention = RETINAFACE_INPUT
    letterboxes = [Letterbox.fit(frame.width, frame.height, width, height) for frame in frames]
    settings = {"mean": convention.mean, "std": convention.std}
    full = [np.ascontiguousarray(frame.to_ndarray(format=convention.pixel_format)) for frame in frames]
    gpu = Preprocessor(width, height, len(frames), device="gpu", **settings)
    on_gpu = to_host(gpu([cupy.asarray(image) for image in full], letterboxes))
    cpu = Preprocessor(width, height, len(frames), device="cpu", scale=True, **settings)
    on_cpu = np.array(cpu(full, letterboxes), copy=True)
    assert on_gpu.shape == on_cpu.shape == (len(frames), 3, height, width) and on_gpu.dtype == np.float32, on_gpu.shape
    std = np.asarray(convention.std, np.float32)[:, None, None]
    for i, letterbox in enumerate(letterboxes):
        content = np.s_[:, : letterbox.content_height, : letterbox.content_width]
        difference = np.abs(on_gpu[i] - on_cpu[i]) * std
        assert difference[content].max() <= 2.0, f"image {i}: pixel values differ by up to {difference.max():.1f}"
        padding = on_gpu[i].copy()
        padding[content] = 0.0
        assert not padding.any(), f"image {i}: the GPU padding is not the mean colour (zero after normalizing)"


def test_nvdec_frames_match_pyav_frames(sample_clip: Path) -> None:
    cuda()
    need("PyNvVideoCodec", "pynvvideocodec")
    from dalistream.decode.nvdec import NvdecDecoder

    wanted = 25
    codec, units = clip_units(sample_clip, 2.0)
    assert len(units) > wanted, f"{len(units)} access units in the clip's first 2 s"
    nvdec, pyav = NvdecDecoder(codec), PyAvDecoder(codec)
    on_gpu: dict[int, np.ndarray] = {}
    on_cpu: dict[int, np.ndarray] = {}

    def take_gpu(decoded: list) -> None:
        for frame in decoded:  # converted at once: a decoder may reuse a frame's surface later
            assert (frame.width, frame.height) == (1920, 1080), (frame.width, frame.height)
            letterbox = Letterbox.fit(frame.width, frame.height, *INPUT)
            on_gpu[int(frame.pts)] = to_host(nvdec.convert(frame, letterbox, "rgb24"))

    for tag, unit in enumerate(units):
        take_gpu(nvdec.decode(unit.data, tag))
        on_cpu.update((frame.pts, frame.to_ndarray(format="rgb24")) for frame in pyav.decode(unit.data, tag))
    if len(on_gpu) < wanted:
        take_gpu(nvdec.flush())
    tags = sorted(on_cpu)[:wanted]
    assert len(tags) == wanted and all(tag in on_gpu for tag in tags), f"NVDEC gave frames {sorted(on_gpu)[:wanted]}, PyAV {tags}"
    for tag in tags:
        gpu, cpu = on_gpu[tag], on_cpu[tag]
        assert_close_frames(gpu, cpu, f"frame {tag}")


def test_nvdec_scales_a_large_stream_to_its_letterbox(sample_clip: Path) -> None:
    """Decoded straight to the letterbox size by NVDEC's scaler: the frames PyAV decodes and
    swscale scales (two different scalers, so PSNR >= 30 dB), the stream's size reported."""
    cuda()
    need("PyNvVideoCodec", "pynvvideocodec")
    from dalistream.decode.nvdec import NvdecDecoder, output_size

    codec, units = clip_units(sample_clip, 1.0)
    nvdec, pyav = NvdecDecoder(codec, INPUT), PyAvDecoder(codec)
    letterbox = Letterbox.fit(1920, 1080, *INPUT)
    scaled = output_size(1920, 1080, INPUT)
    assert scaled == (letterbox.content_width, letterbox.content_height) == (960, 540)
    compared = 0
    for tag, unit in enumerate(units):
        on_cpu = {frame.pts: frame for frame in pyav.decode(unit.data, tag)}
        for frame in nvdec.decode(unit.data, tag):
            assert (frame.width, frame.height) == (1920, 1080) and nvdec.output == scaled
            image = to_host(nvdec.convert(frame, letterbox, "rgb24"))
            assert image.shape == (540, 960, 3), image.shape
            if frame.pts in on_cpu:
                assert_close_frames(image, PyAvDecoder.convert(on_cpu[frame.pts], letterbox, "rgb24"), f"frame {tag}", 30.0)
                compared += 1
    assert compared >= len(units) - 2, f"{compared} of {len(units)} frames compared"


def test_dali_gop_frames_match_pyav_frames(sample_clip: Path) -> None:
    """The dali-gop source on the clip's first GOPs, every frame selected: the frames PyAV
    decodes, at PSNR >= 40 dB, in presentation order, none missing."""
    cuda()
    need("nvidia.dali", "nvidia-dali-cuda130")
    from dalistream.decode.gop import DaliGopFrameSource

    codec, units = clip_units(sample_clip, 4.0)
    assert sum(unit.key for unit in units) >= 2, "want at least two GOPs"
    source = DaliGopFrameSource("cam", EveryFrame(), FrameSpec(None, "rgb24"), Stages())
    received = [ReceivedAccessUnit(unit.data, unit.key, unit.pts, 0.0, 0.0) for unit in units]
    decoded = source.process([StreamStart(codec), *received])
    ended = source.finish()
    frames = decoded.frames + ended.frames
    assert decoded.errors == ended.errors == 0
    pyav = PyAvDecoder(codec)
    on_cpu = [frame for tag, unit in enumerate(units) for frame in pyav.decode(unit.data, tag)] + pyav.flush()
    assert [frame.pts for frame in frames] == sorted(unit.pts for unit in units)
    assert len(frames) == len(on_cpu) == len(units)
    for index, (gpu, cpu) in enumerate(zip(frames, on_cpu, strict=True)):
        assert_close_frames(to_host(gpu.image), cpu.to_ndarray(format="rgb24"), f"frame {index}")


class EveryFrame:
    """A selector that keeps every frame."""

    def take(self, pts: float) -> bool:
        return True

    def reset(self) -> None:
        pass


def assert_close_frames(gpu: np.ndarray, cpu: np.ndarray, what: str, min_psnr: float = 40.0) -> None:
    assert gpu.shape == cpu.shape and gpu.dtype == np.uint8, (what, gpu.shape, gpu.dtype, cpu.shape)
    error = np.mean((gpu.astype(np.float64) - cpu.astype(np.float64)) ** 2)
    psnr = float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)
    assert psnr >= min_psnr, f"{what}: PSNR {psnr:.1f} dB (mean abs difference {np.abs(gpu.astype(int) - cpu).mean():.2f})"


def test_service_on_the_gpu_finds_the_clip_faces(sample_clip: Path, clip_truth: ClipTruth, model_path: Path, tmp_path: Path) -> None:
    cuda()
    for module, install in (("nvidia.dali", "nvidia-dali-cuda130"), ("PyNvVideoCodec", "pynvvideocodec"),
                            ("torch", "torch"), ("onnx2torch", "onnx2torch")):
        need(module, install)
    config = demo_config([sample_clip.as_uri()] * 2, tmp_path / "out", camera={"pace": "fast"},
                         model={"engine": "torch", "precision": "fp16", "cache_dir": str(tmp_path / "cache")}, device="gpu")
    lines, runtime = run_pipeline(config)  # ends by itself: both cameras are clips that end
    assert runtime.plan.device == "gpu", runtime.plan
    report = summarize(lines, clip_truth)["cameras"]
    for camera in ("cam0", "cam1"):
        entry = report[camera]
        # Like the CPU run (test_file_sources): every 5th of 500 frames, none dropped, the faces found.
        assert entry["analysed"] == 100 and entry["dropped"] == 0 and entry["recall"] >= 0.99, (camera, entry)
