"""The NVDEC source's own logic on PyNvVideoCodec's API over FFmpeg (``fake_gpu``): each decoder
sized from its stream's SPS, large streams decoded straight to their letterbox size while
frames keep the stream's size, and what happens before the first SPS. tests/gpu runs NVDEC."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import structlog

import fake_gpu
from clips import encode
from model_inputs import clip_units

from dalistream.decode import FrameSpec, StreamStart
from dalistream.decode.nvdec import NvdecFrameSource, output_size
from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.pipeline.sampling import Sampler


@pytest.fixture
def nvc(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = fake_gpu.fake_nvc()
    fake_gpu.install(monkeypatch, fake_gpu.fake_cupy(), module)
    return module


def made(nvc: types.ModuleType) -> list[tuple[dict, tuple[int, int] | None]]:
    """Each stand-in decoder made so far: its CreateDecoder arguments and its setReconfigParams size."""
    return [fake_gpu.decoder_settings(decoder) for decoder in nvc._made]


def received_units(path: Path, seconds: float) -> tuple[str, list[ReceivedAccessUnit]]:
    codec, units = clip_units(path, seconds)
    return codec, [ReceivedAccessUnit(unit.data, unit.key, unit.pts, 0.0, 0.0) for unit in units]


def test_output_sizes() -> None:
    assert output_size(1920, 1080, (640, 640)) == (640, 360)
    assert output_size(2560, 1440, (640, 480)) == (640, 360)
    assert output_size(1000, 999, (333, 333)) == (334, 334)  # 333x333 rounded up to even for NV12
    assert output_size(640, 360, (640, 640)) is None  # already the letterbox size
    assert output_size(320, 240, (640, 640)) is None  # smaller: the graph scales it up
    assert output_size(1920, 1080, None) is None


def test_a_large_stream_comes_out_at_its_letterbox_size(nvc: types.ModuleType, sample_clip: Path) -> None:
    codec, units = received_units(sample_clip, 1.0)
    source = NvdecFrameSource("cam", Sampler(5.0), FrameSpec((640, 640), "bgr24"), Stages())
    decoded = source.process([StreamStart(codec), *units])
    ((kwargs, target),) = made(nvc)
    assert (kwargs["maxwidth"], kwargs["maxheight"]) == (1920, 1088)  # the stream's coded size
    assert target == (640, 360)
    assert decoded.errors == 0 and len(decoded.frames) >= 4
    pyav = PyAvDecoder(codec)
    on_cpu = {unit.pts: frame for tag, unit in enumerate(units) for frame in pyav.decode(unit.data, tag)}
    for frame in decoded.frames:
        assert frame.letterbox == Letterbox.fit(1920, 1080, 640, 640)  # boxes map back to the stream's pixels
        assert type(frame.image) is fake_gpu.DeviceArray and frame.image.shape == (360, 640, 3)
        expected = PyAvDecoder.convert(on_cpu[frame.pts], frame.letterbox, "bgr24").astype(int)
        image = frame.image.get().astype(int)
        assert np.abs(image - expected).mean() < 3.0  # the same picture (swscale rounds RGB and BGR apart)
        assert np.abs(image[..., ::-1] - expected).mean() > 10.0  # in the model's channel order


def test_a_stream_within_the_letterbox_is_not_scaled(nvc: types.ModuleType, sample_clip: Path) -> None:
    codec, units = received_units(sample_clip, 0.5)
    source = NvdecFrameSource("cam", Sampler(5.0), FrameSpec((2048, 2048), "rgb24"), Stages())
    decoded = source.process([StreamStart(codec), *units])
    assert made(nvc)[0][1] is None
    assert decoded.frames and all(frame.image.shape == (1080, 1920, 3) for frame in decoded.frames)


def test_a_new_size_gets_a_decoder_of_its_own_size(nvc: types.ModuleType, tmp_path: Path) -> None:
    clip = encode(tmp_path / "two.h265", [(1280, 720, 10), (320, 180, 10)], codec="h265")
    codec, units = received_units(clip, 10.0)
    source = NvdecFrameSource("cam", Sampler(25.0), FrameSpec((640, 640), "rgb24"), Stages())
    frames = source.process([StreamStart(codec), *units]).frames + source.finish().frames
    assert [(kwargs["maxwidth"], kwargs["maxheight"], target) for kwargs, target in made(nvc)] == [
        (1280, 720, (640, 360)),
        (320, 192, None),  # 180 rows are 12 macroblock rows
    ]
    assert [frame.letterbox.source_width for frame in frames] == [1280] * 10 + [320] * 10
    assert [frame.image.shape[:2] for frame in frames] == [(360, 640)] * 10 + [(180, 320)] * 10


def test_units_before_the_first_sps_are_decode_errors(nvc: types.ModuleType, sample_clip: Path) -> None:
    codec, units = received_units(sample_clip, 1.0)
    first_key = next(index for index, unit in enumerate(units) if unit.key)
    later = units[first_key + 1 : first_key + 4]
    source = NvdecFrameSource("cam", Sampler(25.0), FrameSpec((640, 640), "bgr24"), Stages())
    decoded = source.process([StreamStart(codec), *later, units[first_key]])
    assert decoded.errors == len(later) and len(made(nvc)) == 1  # no decoder until the SPS came
    assert len(decoded.frames) == 1 and decoded.frames[0].pts == units[first_key].pts


def test_a_stream_nvdec_refuses_is_a_decode_error_said_once_and_retried_at_each_sps(
    nvc: types.ModuleType, sample_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As NvDecoder does: the decoder is made without a look at the stream, the sequence callback
    of the first Decode refuses it, and the refused decoder would answer every later unit with
    "Decoder not initialized." — so it is dropped, and the next key unit's SPS gets a new one."""
    monkeypatch.setattr(fake_gpu.PyNvDecoder, "_max_width", 1280)
    codec, units = received_units(sample_clip, 4.0)
    keys = sum(unit.key for unit in units)
    assert keys >= 2
    source = NvdecFrameSource("cam", Sampler(25.0), FrameSpec((640, 640), "bgr24"), Stages())
    with structlog.testing.capture_logs() as logs:
        decoded = source.process([StreamStart(codec), *units])
    assert decoded.errors == len(units) and not decoded.frames
    assert len(made(nvc)) == keys  # one decoder per SPS, each refused
    said = [entry for entry in logs if entry["event"] == "decode_error"]
    assert len(said) == 1 and said[0]["camera"] == "cam"
    assert said[0]["error"] == f"NVDEC cannot decode this 1920x1080 H264 stream: {fake_gpu.SEQUENCE_REFUSED}"


def test_a_scaling_nvdec_refuses_is_a_decode_error(nvc: types.ModuleType, sample_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """setReconfigParams beyond the decoder's maximum raises RuntimeError (a std::runtime_error)."""
    monkeypatch.setattr("dalistream.decode.nvdec.output_size", lambda width, height, input_size: (width * 2, height * 2))
    codec, units = received_units(sample_clip, 0.5)
    source = NvdecFrameSource("cam", Sampler(25.0), FrameSpec((640, 640), "bgr24"), Stages())
    decoded = source.process([StreamStart(codec), *units])
    assert decoded.errors == len(units) and not decoded.frames


def test_with_face_crops_nvdec_keeps_the_full_size_and_crops_are_cut_on_the_device(nvc: types.ModuleType, sample_clip: Path) -> None:
    codec, units = received_units(sample_clip, 0.5)
    source = NvdecFrameSource("cam", Sampler(5.0), FrameSpec((640, 640), "bgr24", crops=True), Stages())
    frames = source.process([StreamStart(codec), *units]).frames
    assert made(nvc)[0][1] is None  # no decoder-side scaling: crops are at full resolution
    (frame, *_) = frames
    assert frame.image.shape == (1080, 1920, 3) and frame.full.width == 1920
    cupy = sys.modules["cupy"]
    before = list(fake_gpu.device_of(cupy).round_trips)
    crop = frame.full.crop((100, 200, 164, 280))
    assert type(crop) is np.ndarray and crop.shape == (80, 64, 3)
    np.testing.assert_array_equal(crop, frame.image.get()[200:280, 100:164, ::-1])  # RGB
    assert fake_gpu.device_of(cupy).round_trips == [*before, "get", "get"]  # the crop; then the test's own look
