"""Annex-B byte streams: NAL units between start codes, and an access unit's sequence parameters.

Sans-IO and pure. Start codes are ``00 00 01`` or ``00 00 00 01`` (our depacketizers write the
four-byte form; FFmpeg's ``h264_mp4toannexb``/``hevc_mp4toannexb`` filters, which feed clips,
write either).
"""

from __future__ import annotations

import re

from dalistream.rtp import h264, h265

_START = re.compile(b"\x00\x00\x01")
NAL_TYPE = {"H264": h264.type_field, "H265": h265.type_field}
"""Each codec's reader of a NAL unit's type from its first byte."""
# What fixes a stream's picture size and format, per codec.
_SEQUENCE = {"H264": frozenset({h264.NAL_SPS}), "H265": frozenset({h265.NAL_VPS, h265.NAL_SPS})}


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without start codes (trailing zeros of the
    four-byte form, which belong to the next start code, are dropped)."""
    starts = [match.end() for match in _START.finditer(data)]
    ends = [match.start() for match in _START.finditer(data)][1:] + [len(data)]
    return [data[start:end].rstrip(b"\x00") if end < len(data) else data[start:end] for start, end in zip(starts, ends)]


def sequence_parameters(data: bytes, codec: str) -> bytes:
    """The access unit's sequence-level parameter sets (H.264 SPS; H.265 VPS + SPS), joined,
    or ``b""`` when it carries none. A change of these bytes is where a stream may change its
    picture size, profile or bit depth."""
    nal_type, wanted = NAL_TYPE[codec], _SEQUENCE[codec]
    return b"".join(nal for nal in nal_units(data) if nal and nal_type(nal[0]) in wanted)
