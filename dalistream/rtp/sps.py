"""A stream's picture size read from its sequence parameter set (H.264 7.3.2.1.1, H.265 7.3.2.2).

Sans-IO and pure. The GPU decoder is told its output size when it is created, before any
frame comes out, so the size must come from the bitstream itself: the SPS's coded size less
its cropping (H.264 ``frame_cropping``, H.265 ``conformance_window``), which is the size a
decoder displays. Only the fields before the size are read; nothing after it is validated.
"""

from __future__ import annotations

from dalistream.rtp import h264, h265
from dalistream.rtp.annexb import NAL_TYPE, nal_units

# H.264 profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# (SubWidthC, SubHeightC) by chroma_format_idc (Table 6-1); 0 is monochrome.
_CHROMA_SUBSAMPLING = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}


class SpsError(ValueError):
    """The sequence parameter set ends early or holds an impossible value."""


class _Bits:
    """Big-endian bit reader over an RBSP (emulation prevention removed)."""

    def __init__(self, rbsp: bytes) -> None:
        self._value = int.from_bytes(rbsp, "big")
        self._left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise SpsError("sequence parameter set ends early")
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        """Exp-Golomb ue(v); at most 31 leading zero bits (values up to 2**32 - 2, the most ue(v) holds)."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise SpsError("exp-Golomb code with more than 31 leading zeros")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def rbsp(nal: bytes) -> bytes:
    """A NAL unit's payload with its emulation prevention bytes (``00 00 03``) removed."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def picture_size(unit: bytes, codec: str) -> tuple[int, int] | None:
    """The displayed (width, height) the access unit's SPS declares, or None when it carries
    no SPS. Raises :class:`SpsError` for an SPS that cannot be read."""
    try:
        wanted, parse = _SPS[codec]
    except KeyError:
        raise ValueError(f"unsupported codec {codec!r}; expected H264 or H265") from None
    nal_type = NAL_TYPE[codec]
    for nal in nal_units(unit):
        if nal and nal_type(nal[0]) == wanted:
            width, height = parse(_Bits(rbsp(nal)))
            if width <= 0 or height <= 0:
                raise SpsError(f"SPS declares a {width}x{height} picture")
            return width, height
    return None


def _h264_size(bits: _Bits) -> tuple[int, int]:
    bits.u(8)  # NAL header
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format, separate_planes = 1, 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format > 3:
            raise SpsError(f"chroma_format_idc {chroma_format}")
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (bits.ue() + 1) * 16
    map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    height = (2 - frame_mbs_only) * map_units * 16
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_width, sub_height = _CHROMA_SUBSAMPLING[0 if separate_planes else chroma_format]
        width -= sub_width * (left + right)
        height -= sub_height * (2 - frame_mbs_only) * (top + bottom)
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last
        if not following:
            return  # the rest repeat the last value: nothing more is coded


def _h265_size(bits: _Bits) -> tuple[int, int]:
    bits.u(16)  # NAL header
    bits.u(4)  # sps_video_parameter_set_id
    sub_layers = bits.u(3)  # sps_max_sub_layers_minus1
    bits.u(1)  # sps_temporal_id_nesting_flag
    _skip_profile_tier_level(bits, sub_layers)
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format = bits.ue()
    if chroma_format > 3:
        raise SpsError(f"chroma_format_idc {chroma_format}")
    separate_planes = bits.u(1) if chroma_format == 3 else 0
    width, height = bits.ue(), bits.ue()
    if bits.u(1):  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_width, sub_height = _CHROMA_SUBSAMPLING[0 if separate_planes else chroma_format]
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    return width, height


def _skip_profile_tier_level(bits: _Bits, sub_layers: int) -> None:
    bits.u(88)  # general profile space, tier, profile, compatibility and constraint flags
    bits.u(8)  # general_level_idc
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))  # reserved_zero_2bits up to eight sub-layers
    for profile_present, level_present in present:
        bits.u(88 if profile_present else 0)
        bits.u(8 if level_present else 0)


_SPS = {"H264": (h264.NAL_SPS, _h264_size), "H265": (h265.NAL_SPS, _h265_size)}
"""Each codec's SPS NAL type and the reader of its picture size."""
