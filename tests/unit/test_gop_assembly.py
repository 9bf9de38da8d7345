"""GOP assembly for the ``dali-gop`` GPU source: closed GOPs from a camera's access units."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clips import encode
from model_inputs import clip_units

from dalistream import dali
from dalistream.decode import SOURCES, DaliGopFrameSource, NvdecFrameSource, PyAvFrameSource, StreamStart, create_source
from dalistream.decode.gop import Gop, GopAssembler
from dalistream.decode.source import FrameSpec
from dalistream.graphs import gop_decode
from dalistream.graphs.gop import FRAMES, GOP
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.pipeline.sampling import Sampler


def unit(n: int, key: bool = False, pts: float | None = None) -> ReceivedAccessUnit:
    return ReceivedAccessUnit(bytes([0, 0, 0, 1, n % 256]), key, n * 0.04 if pts is None else pts, float(n), float(n))


def feed(assembler: GopAssembler, units: list[ReceivedAccessUnit]) -> list[tuple[int, ...]]:
    gops = [assembler.add(u) for u in units] + [assembler.finish()]
    return [tuple(int(u.received) for u in gop.units) for gop in gops if gop is not None]


def test_a_key_unit_opens_a_gop_and_the_next_one_closes_it() -> None:
    assembler = GopAssembler()
    assert assembler.start("H264") is None
    keys = {0, 3, 5}
    assert feed(assembler, [unit(n, n in keys) for n in range(8)]) == [(0, 1, 2), (3, 4), (5, 6, 7)]
    assert assembler.dropped == 0


def test_units_before_the_first_key_unit_are_dropped_and_counted() -> None:
    assembler = GopAssembler()
    assembler.start("H265")
    assert feed(assembler, [unit(0), unit(1), unit(2, True), unit(3)]) == [(2, 3)]
    assert assembler.dropped == 2


def test_an_overlong_gop_is_cut_and_its_tail_waits_for_the_next_key_unit() -> None:
    assembler = GopAssembler(max_units=3)
    assembler.start("H264")
    assert feed(assembler, [unit(0, True), *map(unit, range(1, 6)), unit(6, True), unit(7)]) == [(0, 1, 2), (6, 7)]
    assert assembler.dropped == 3


def test_a_new_stream_closes_the_last_gop_of_the_old_one() -> None:
    assembler = GopAssembler()
    assembler.start("H264")
    assembler.add(unit(0, True))
    assembler.add(unit(1))
    gop = assembler.start("H265")
    assert gop is not None and gop.codec == "H264" and len(gop.units) == 2
    assert assembler.add(unit(2)) is None and assembler.dropped == 1  # the new stream waits for its key unit
    with pytest.raises(RuntimeError, match="before the stream started"):
        GopAssembler().add(unit(0, True))


def test_a_gop_is_one_annex_b_stream_and_its_frames_come_in_presentation_order() -> None:
    assembler = GopAssembler()
    assembler.start("H264")
    # I P B B in decode order, with presentation times I=0, P=3, B=1, B=2 (in frame periods).
    for u in (unit(0, True, 0.0), unit(1, pts=0.12), unit(2, pts=0.04), unit(3, pts=0.08)):
        assembler.add(u)
    gop = assembler.finish()
    assert gop is not None and gop.data == b"".join(u.data for u in gop.units)
    assert [int(u.received) for u in gop.display_order()] == [0, 2, 3, 1]


@given(st.lists(st.booleans(), max_size=80), st.integers(1, 10))
def test_every_unit_is_in_one_gop_or_counted_dropped(keys: list[bool], max_units: int) -> None:
    assembler = GopAssembler(max_units)
    assembler.start("H264")
    gops = feed(assembler, [unit(n, key) for n, key in enumerate(keys)])
    placed = [n for gop in gops for n in gop]
    assert sorted(placed) == placed and len(placed) + assembler.dropped == len(keys)
    assert all(keys[gop[0]] and len(gop) <= max_units for gop in gops)


def test_each_device_names_its_sources_and_gpu_decode_picks_one() -> None:
    spec, stages = FrameSpec((64, 64), "bgr24"), Stages()
    assert list(SOURCES["gpu"]) == ["nvdec", "dali-gop"]
    assert type(create_source("cpu", "c", Sampler(5.0), spec, stages, "dali-gop")) is PyAvFrameSource
    assert type(create_source("gpu", "c", Sampler(5.0), spec, stages)) is NvdecFrameSource
    assert type(create_source("gpu", "c", Sampler(5.0), spec, stages, "dali-gop")) is DaliGopFrameSource


def test_the_gop_graph_returns_the_frames_asked_for_by_display_index() -> None:
    """graphs/gop.py wired as the GPU source runs it, on DALI's CPU decoder (VP9: the CPU backend
    has no H.264), with frames whose brightness gives their index away."""
    clip = io.BytesIO()
    with av.open(clip, "w", format="webm") as out:
        stream = out.add_stream("libvpx-vp9", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    pipe = dali.build(gop_decode, device_id=None, device="cpu", batch_size=1, num_threads=1)  # as the GPU source builds it
    encoded = np.frombuffer(clip.getvalue(), np.uint8)
    pipe.feed_input(GOP, [encoded])
    pipe.feed_input(FRAMES, [np.asarray([1, 4, 7], np.int32)])
    (output,) = pipe.run()
    frames = np.asarray(output.as_tensor())[0]
    assert frames.shape == (3, 48, 64, 3)
    assert [round(float(frame.mean()) / 20) for frame in frames] == [1, 4, 7]


@pytest.mark.parametrize(("codec", "bframes", "container"), [("h264", 0, None), ("h264", 2, "mp4"), ("h265", 0, None)])
def test_a_gop_goes_to_dali_as_mpegts_with_every_timestamp(tmp_path, codec: str, bframes: int, container: str | None) -> None:
    """DALI indexes a sample's frames by timestamp and refuses a stream without them, which is
    what FFmpeg's raw Annex-B demuxer gives. The same demuxer (libavformat) reads the wrapped
    GOP: every packet has both times, decode times rise and never pass presentation times, the
    frames are the raw stream's, and frame i in time order is the GOP's ``display_order()[i]``."""
    clip = encode(tmp_path / f"gop.{container or codec}", [(64, 48, 12)], codec, container, gop=12, bframes=bframes)
    codec_name, units = clip_units(clip, 10.0)
    gop = Gop(codec_name, tuple(ReceivedAccessUnit(u.data, u.key, u.pts + 7.0, 0.0, 0.0) for u in units))
    with av.open(io.BytesIO(gop.data), format={"h264": "h264", "h265": "hevc"}[codec]) as raw:
        assert all(packet.pts is None for packet in raw.demux(video=0) if packet.size)  # what DALI refuses
    with av.open(io.BytesIO(gop.data), format={"h264": "h264", "h265": "hevc"}[codec]) as raw:
        expected = [frame.to_ndarray(format="gray") for frame in raw.decode(video=0)]
    data = gop.mpegts()
    with av.open(io.BytesIO(data)) as wrapped:
        assert wrapped.format.name == "mpegts"
        times = [(packet.pts, packet.dts) for packet in wrapped.demux(video=0) if packet.size]
    assert len(times) == len(units) and all(pts is not None and dts is not None for pts, dts in times)
    assert all(dts <= pts for pts, dts in times) and [dts for _, dts in times] == sorted({dts for _, dts in times})
    with av.open(io.BytesIO(data)) as wrapped:
        decoded = list(wrapped.decode(video=0))
    frames = [frame.to_ndarray(format="gray") for frame in decoded]
    assert len(frames) == len(expected) == len(units)
    assert [frame.pts for frame in decoded] == sorted(pts for pts, _ in times)  # frame i in time order: DALI's index i
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected))
    by_time = [unit.pts for unit in sorted(gop.units, key=lambda unit: unit.pts)]
    assert [unit.pts for unit in gop.display_order()] == by_time
    assert bframes == 0 or [unit.pts for unit in gop.units] != by_time  # B-frames: decode order differs


def test_the_gop_source_runs_dali_on_its_stream_and_copies_the_frames_there(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """On the CuPy stand-in, with a stand-in pipeline in place of DALI's (no H.264 decoder runs
    here): each GOP goes in as MPEG-TS, the run is bound to the decode thread's own stream, the
    wanted frames are copied out of DALI's output in the model's channel order, and the host
    waits for that stream once per GOP before the frames leave (DALI's next run may rewrite
    its output, and the frames are read on other streams)."""
    import fake_gpu

    cupy = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, cupy)
    device = fake_gpu.device_of(cupy)
    runs: list[tuple[object, bytes, list[int]]] = []
    outputs: list[np.ndarray] = []

    class Output:
        def __init__(self, frames: np.ndarray) -> None:
            self.frames = frames

        def as_tensor(self) -> np.ndarray:
            return self.frames

    class Pipe:
        def __init__(self) -> None:
            self.fed: dict[str, list] = {}

        def feed_input(self, name: str, data: list, **kwargs: object) -> None:
            self.fed[name] = data

        def run(self, stream: object = None) -> tuple[Output]:
            wanted = self.fed[FRAMES][0].tolist()
            runs.append((stream, self.fed[GOP][0].tobytes(), wanted))
            rgb = np.stack([np.dstack([np.full((48, 64), i, np.uint8), np.zeros((48, 64, 2), np.uint8)]) for i in wanted])
            outputs.append(rgb)
            return (Output(rgb[None]),)

    monkeypatch.setattr(dali, "build", lambda graph, **arguments: Pipe())
    clip = encode(tmp_path / "gops.h264", [(64, 48, 15)], gop=5)
    codec, units = clip_units(clip, 10.0)
    source = DaliGopFrameSource("cam", Sampler(10.0), FrameSpec((64, 64), "bgr24", crops=True), Stages())
    decoded = source.process([StreamStart(codec), *(ReceivedAccessUnit(u.data, u.key, u.pts, 0.0, 0.0) for u in units)])
    frames = decoded.frames + source.finish().frames
    assert len(runs) == 3 and all(data[0] == 0x47 for _, data, _ in runs)  # three GOPs, each an MPEG-TS stream
    streams = {id(stream) for stream, _, _ in runs}
    (stream,) = [stream for stream, _, _ in runs[:1]]
    assert len(streams) == 1 and stream is not cupy.cuda.Stream.null
    assert [call for call in device.calls if call[0] == "synchronize"] == [("synchronize", device.name(stream))] * 3
    assert len(frames) == sum(len(wanted) for _, _, wanted in runs) >= 5
    originals = [image for rgb in outputs for image in rgb]
    for frame, original in zip(frames, originals, strict=True):
        assert type(frame.image) is fake_gpu.DeviceArray
        pixels = frame.image.get()
        np.testing.assert_array_equal(pixels, original[..., ::-1])  # BGR, for RetinaFace
        assert not np.shares_memory(frame.image._host, original)
        np.testing.assert_array_equal(frame.full.crop((8, 4, 24, 20)), original[4:20, 8:24])  # face crops: RGB, cut on the device
