"""The picture size read from a stream's SPS equals the size FFmpeg decodes, for the layouts
encoders write: cropped sizes, 4:2:0 / 4:2:2 / 4:4:4, interlaced H.264, scaling matrices."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_inputs import clip_units

from dalistream.rtp.sps import SpsError, picture_size, rbsp

ENCODERS = {"H264": ("libx264", "h264"), "H265": ("libx265", "hevc")}
QUIET = {"x264-params": "log=-1", "x265-params": "log-level=none"}


def encode(codec: str, width: int, height: int, pix_fmt: str = "yuv420p", params: str = "") -> bytes:
    """One frame of ``codec`` as an Annex-B access unit (parameter sets first)."""
    encoder, _ = ENCODERS[codec]
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = Fraction(1, 25)
    key = "x264-params" if codec == "H264" else "x265-params"
    context.options = {"preset": "ultrafast", key: ":".join(filter(None, [QUIET[key], params]))}
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    return b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])


def decoded_size(codec: str, unit: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(unit), format=ENCODERS[codec][1]) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


@pytest.mark.parametrize("codec", ["H264", "H265"])
@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "params"),
    [
        (1920, 1080, "yuv420p", ""),  # 1088 coded, cropped by 8
        (642, 362, "yuv420p", ""),
        (101, 77, "yuv444p", ""),  # odd sizes: 4:4:4 crops in single pixels
        (130, 94, "yuv422p", ""),
    ],
)
def test_the_sps_size_is_the_decoded_size(codec: str, width: int, height: int, pix_fmt: str, params: str) -> None:
    unit = encode(codec, width, height, pix_fmt, params)
    assert picture_size(unit, codec) == decoded_size(codec, unit) == (width, height)


@pytest.mark.parametrize(
    "params",
    [
        "tff=1",  # interlaced: frame_mbs_only_flag 0, heights and crops in field pairs
        "bframes=2",  # picture order count type 0 (without B-frames x264 writes type 2)
    ],
)
def test_h264_sps_variants(params: str) -> None:
    unit = encode("H264", 320, 244, "yuv420p", params)
    assert picture_size(unit, "H264") == decoded_size("H264", unit) == (320, 244)


class BitWriter:
    def __init__(self) -> None:
        self.bits = ""

    def u(self, n: int, value: int) -> None:
        self.bits += format(value, f"0{n}b") if n else ""

    def ue(self, value: int) -> None:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")


def high_profile_sps(scaling_deltas: list[list[int]], crop: tuple[int, int, int, int]) -> bytes:
    """An H.264 High 4:2:2 SPS written field by field (7.3.2.1.1): explicit scaling lists
    (x264 puts its matrices in the PPS), picture order count type 1, 40x30 macroblocks."""
    w = BitWriter()
    w.u(8, 0x67)
    w.u(8, 122)  # profile_idc: High 4:2:2
    w.u(16, 0x0028)
    w.ue(0)  # seq_parameter_set_id
    w.ue(2)  # chroma_format_idc 4:2:2
    w.ue(0), w.ue(0), w.u(1, 0)  # bit depths, qpprime flag
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(8):
        deltas = scaling_deltas[i] if i < len(scaling_deltas) else None
        w.u(1, deltas is not None)
        for delta in deltas or []:
            w.se(delta)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    w.u(1, 0), w.se(-3), w.se(2)
    w.ue(2), w.se(1), w.se(-1)  # two offsets in the cycle
    w.ue(1), w.u(1, 0)  # max_num_ref_frames, gaps flag
    w.ue(39), w.ue(29), w.u(1, 1), w.u(1, 1)  # 40x30 macroblocks, frame_mbs_only, direct_8x8
    w.u(1, any(crop))
    if any(crop):
        for value in crop:
            w.ue(value)
    w.u(1, 0)  # vui_parameters_present_flag
    return b"\x00\x00\x00\x01" + w.nal()


def test_h264_sps_with_scaling_lists_and_poc_type_1() -> None:
    lists = [
        [0] * 16,  # sixteen deltas of 0: every value 8
        [5, -3, 0, 7] + [0] * 12,
        [-8],  # next scale 0 at once: the default matrix, nothing more coded
    ]
    lists += [[0] * 16] * 3 + [[1] * 64, [2, -2] * 32]  # the two 8x8 lists
    assert picture_size(high_profile_sps(lists, (0, 0, 0, 0)), "H264") == (640, 480)
    # 4:2:2 crops width in pairs and height in single rows
    assert picture_size(high_profile_sps(lists[:2], (1, 2, 3, 4)), "H264") == (640 - 6, 480 - 7)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["H264", "H265"]), st.integers(8, 200), st.integers(8, 200))
def test_any_even_size(codec: str, half_width: int, half_height: int) -> None:
    width, height = 2 * half_width, 2 * half_height
    unit = encode(codec, width, height)
    assert picture_size(unit, codec) == (width, height)


def test_the_sample_clip(sample_clip) -> None:
    codec, units = clip_units(sample_clip, 1.0)
    key = next(unit for unit in units if unit.key)
    assert picture_size(key.data, codec) == decoded_size(codec, key.data)


def test_units_without_an_sps() -> None:
    assert picture_size(b"\x00\x00\x00\x01\x41\x9a\x02", "H264") is None
    assert picture_size(b"", "H265") is None


def test_emulation_prevention_is_removed() -> None:
    assert rbsp(b"\x67\x00\x00\x03\x01\x00\x00\x03\x00\x03") == b"\x67\x00\x00\x01\x00\x00\x00\x03"


@pytest.mark.parametrize("codec", ["H264", "H265"])
def test_a_truncated_sps_is_an_error(codec: str) -> None:
    unit = encode(codec, 64, 48)
    start = unit.index(b"\x00\x00\x01\x67" if codec == "H264" else b"\x00\x00\x01\x42") + 3
    with pytest.raises(SpsError):
        picture_size(b"\x00\x00\x00\x01" + unit[start : start + 6], codec)


@given(st.sampled_from(["H264", "H265"]), st.binary(max_size=64))
def test_garbage_after_an_sps_header_is_an_error_or_a_size(codec: str, payload: bytes) -> None:
    header = b"\x67" if codec == "H264" else b"\x42\x01"
    try:
        size = picture_size(b"\x00\x00\x00\x01" + header + payload, codec)
    except SpsError:
        return
    assert size is not None and min(size) > 0
