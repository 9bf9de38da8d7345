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

from dalistream.rtp.sps import SpsError, _Bits, picture_size, rbsp

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


def high_profile_sps(
    scaling_deltas: list[list[int]],
    crop: tuple[int, int, int, int],
    *,
    profile: int = 122,
    chroma_format: int = 2,
    separate_planes: int = 0,
    always_zero: int = 0,
    poc_offsets: tuple[int, int, list[int]] = (-3, 2, [1, -1]),
    field_pairs: bool = False,
) -> bytes:
    """An H.264 SPS of a High profile written field by field (7.3.2.1.1): by default High 4:2:2,
    explicit scaling lists (x264 puts its matrices in the PPS), picture order count type 1,
    40x30 macroblocks; ``field_pairs``: interlaced, frame_mbs_only_flag 0."""
    w = BitWriter()
    w.u(8, 0x67)
    w.u(8, profile)
    w.u(16, 0x0028)
    w.ue(0)  # seq_parameter_set_id
    w.ue(chroma_format)
    if chroma_format == 3:
        w.u(1, separate_planes)
    w.ue(0), w.ue(0), w.u(1, 0)  # bit depths, qpprime flag
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(12 if chroma_format == 3 else 8):
        deltas = scaling_deltas[i] if i < len(scaling_deltas) else None
        w.u(1, deltas is not None)
        for delta in deltas or []:
            w.se(delta)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1)  # pic_order_cnt_type 1
    non_ref, top_to_bottom, cycle = poc_offsets
    w.u(1, always_zero), w.se(non_ref), w.se(top_to_bottom)
    w.ue(len(cycle))
    for offset in cycle:
        w.se(offset)
    w.ue(1), w.u(1, 0)  # max_num_ref_frames, gaps flag
    w.ue(39), w.ue(29 if not field_pairs else 14), w.u(1, not field_pairs)  # 40x30 macroblocks
    if field_pairs:
        w.u(1, 0)  # mb_adaptive_frame_field_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, any(crop))
    if any(crop):
        for value in crop:
            w.ue(value)
    w.u(1, 0)  # vui_parameters_present_flag
    return b"\x00\x00\x00\x01" + w.nal()


def hevc_sps(
    width: int,
    height: int,
    window: tuple[int, int, int, int] = (0, 0, 0, 0),
    *,
    sub_layers: list[tuple[int, int]] = (),
    chroma_format: int = 1,
    separate_planes: int = 0,
) -> bytes:
    """An H.265 SPS up to its conformance window (7.3.2.2), with ``sub_layers`` (profile and
    level present flags each) in its profile_tier_level (7.3.3)."""
    w = BitWriter()
    w.u(16, 0x4201)
    w.u(4, 0), w.u(3, len(sub_layers)), w.u(1, 1)  # VPS id, sps_max_sub_layers_minus1, nesting
    w.u(88, 0x60_00000000_B0000000_0000)  # general profile: Main, its compatibility flag, constraints
    w.u(8, 93)  # general_level_idc
    for profile_present, level_present in sub_layers:
        w.u(1, profile_present), w.u(1, level_present)
    if sub_layers:
        w.u(2 * (8 - len(sub_layers)), 0)
    for index, (profile_present, level_present) in enumerate(sub_layers):
        if profile_present:
            w.u(88, 0x5A5A5A5A5A5A5A5A5A5A5A >> index)
        if level_present:
            w.u(8, 0xA5 >> index)
    w.ue(0)  # sps_seq_parameter_set_id
    w.ue(chroma_format)
    if chroma_format == 3:
        w.u(1, separate_planes)
    w.ue(width), w.ue(height)
    w.u(1, any(window))
    if any(window):
        for value in window:
            w.ue(value)
    w.ue(0), w.ue(0)  # bit depths: what follows is not read
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
    no_cycle = high_profile_sps(lists[:2], (1, 2, 3, 4), always_zero=1, poc_offsets=(0, 0, []))
    assert picture_size(no_cycle, "H264") == (640 - 6, 480 - 7)
    # field pairs: the height counts map units twice, and crops in pairs of rows
    assert picture_size(high_profile_sps([], (0, 0, 1, 2), field_pairs=True), "H264") == (640, 480 - 6)
    # 12 lists in 4:4:4; lists ending where the running value comes to 0, and where it wraps to 0
    lists_444 = [[0] * 16] * 5 + [[5, -13]] + [[1] * 64] * 5 + [[248]]  # 8 + 5 - 13 = 0; 8 + 248 = 256
    assert picture_size(high_profile_sps(lists_444, (1, 2, 3, 4), profile=244, chroma_format=3), "H264") == (637, 473)
    # separate colour planes are each a monochrome picture: crops in single samples too
    separate = high_profile_sps([], (1, 2, 3, 4), profile=244, chroma_format=3, separate_planes=1)
    assert picture_size(separate, "H264") == (637, 473)


@pytest.mark.parametrize(
    ("sub_layers", "chroma_format", "separate_planes", "window", "size"),
    [
        ((), 1, 0, (0, 0, 0, 0), (1920, 1080)),
        (((1, 0),), 1, 0, (1, 2, 3, 4), (1920 - 6, 1080 - 14)),
        (((1, 1), (0, 1), (1, 0), (0, 0)), 2, 0, (1, 2, 3, 4), (1920 - 6, 1080 - 7)),
        (((0, 1),) * 7, 3, 0, (1, 2, 3, 4), (1920 - 3, 1080 - 7)),
        (((1, 1),) * 2, 3, 1, (1, 2, 3, 4), (1920 - 3, 1080 - 7)),
        ((), 0, 0, (1, 2, 3, 4), (1920 - 3, 1080 - 7)),
    ],
)
def test_hevc_sps_sub_layers_chroma_and_window(sub_layers, chroma_format, separate_planes, window, size) -> None:
    sps = hevc_sps(1920, 1080, window, sub_layers=sub_layers, chroma_format=chroma_format, separate_planes=separate_planes)
    assert picture_size(sps, "H265") == size


def test_the_smallest_picture_and_impossible_values() -> None:
    assert picture_size(hevc_sps(1, 1), "H265") == (1, 1)
    with pytest.raises(SpsError, match=r"^SPS declares a 0x1 picture$"):
        picture_size(hevc_sps(0, 1), "H265")
    with pytest.raises(SpsError, match=r"^SPS declares a 1x0 picture$"):
        picture_size(hevc_sps(1, 0), "H265")
    with pytest.raises(SpsError, match=r"^chroma_format_idc 4$"):
        picture_size(hevc_sps(16, 16, chroma_format=4), "H265")
    with pytest.raises(SpsError, match=r"^chroma_format_idc 4$"):
        picture_size(high_profile_sps([], (0, 0, 0, 0), chroma_format=4), "H264")
    with pytest.raises(ValueError, match=r"^unsupported codec 'VP8'; expected H264 or H265$"):
        picture_size(b"", "VP8")


def test_exp_golomb_codes_read_back_up_to_31_leading_zeros() -> None:
    w = BitWriter()
    values = [0, 1, 2, 3, 7, 254, 2**32 - 2]  # 2**32 - 2: 31 leading zeros, the most ue(v) has
    signed = [0, 1, -1, 2, -2, 127, -128]
    for value in values:
        w.ue(value)
    for value in signed:
        w.se(value)
    bits = _Bits(w.nal())
    assert [bits.ue() for _ in values] == values
    assert [bits.se() for _ in signed] == signed
    too_long = _Bits(bytes(4) + b"\x80" + bytes(4))  # 32 leading zeros
    with pytest.raises(SpsError, match=r"^exp-Golomb code with more than 31 leading zeros$"):
        too_long.ue()
    exact = _Bits(b"\xa5")
    assert exact.u(8) == 0xA5  # every bit there is can be read
    with pytest.raises(SpsError, match=r"^sequence parameter set ends early$"):
        exact.u(1)


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
    assert rbsp(b"\x00\x03\x01\x00\x03") == b"\x00\x03\x01\x00\x03"  # after two zeros only


@pytest.mark.parametrize("codec", ["H264", "H265"])
def test_a_truncated_sps_is_an_error(codec: str) -> None:
    unit = encode(codec, 64, 48)
    start = unit.index(b"\x00\x00\x01\x67" if codec == "H264" else b"\x00\x00\x01\x42") + 3
    with pytest.raises(SpsError, match=r"^sequence parameter set ends early$"):
        picture_size(b"\x00\x00\x00\x01" + unit[start : start + 6], codec)


@given(st.sampled_from(["H264", "H265"]), st.binary(max_size=64))
def test_garbage_after_an_sps_header_is_an_error_or_a_size(codec: str, payload: bytes) -> None:
    header = b"\x67" if codec == "H264" else b"\x42\x01"
    try:
        size = picture_size(b"\x00\x00\x00\x01" + header + payload, codec)
    except SpsError:
        return
    assert size is not None and min(size) > 0
