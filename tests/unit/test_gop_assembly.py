"""GOP assembly for the ``dali-gop`` GPU source: closed GOPs from a camera's access units."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dalistream.decode import SOURCES, DaliGopFrameSource, NvdecFrameSource, PyAvFrameSource, create_source
from dalistream.decode.gop import GopAssembler
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
    pipe = gop_decode(device="cpu", batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1,
                      exec_async=False, exec_pipelined=False)
    pipe.build()
    encoded = np.frombuffer(clip.getvalue(), np.uint8)
    pipe.feed_input(GOP, [encoded])
    pipe.feed_input(FRAMES, [np.asarray([1, 4, 7], np.int32)])
    (output,) = pipe.run()
    frames = np.asarray(output.as_tensor())[0]
    assert frames.shape == (3, 48, 64, 3)
    assert [round(float(frame.mean()) / 20) for frame in frames] == [1, 4, 7]
