"""The video format a camera offers, read from its SDP (RFC 4566) as parsed by aiortsp.

aiortsp's ``SDP`` is a dict: ``medias`` is a list of dicts with ``type``, ``format`` (the
payload types on the m= line) and ``attributes``, where ``rtpmap`` is
``{"pt", "encoding", "clockRate"}`` and ``fmtp`` is ``{"pt", name: value, ...}``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from aiortsp.rtsp.sdp import SDP

SUPPORTED_CODECS: Final = ("H264", "H265")
H265_PARAMETER_SET_KEYS: Final = ("sprop-vps", "sprop-sps", "sprop-pps")
MAX_DON_DIFF: Final = 32767  # RFC 7798 7.1: sprop-max-don-diff is an integer in 0..32767


class SdpError(ValueError):
    """The peer's SDP lacks something needed, or offers something unsupported."""


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """How the video media is carried in RTP."""

    codec: str
    """``"H264"`` or ``"H265"``: the rtpmap encoding name, upper case."""
    payload_type: int
    clock_rate: int
    """RTP timestamp ticks per second (90 000 for video)."""
    parameter_sets: tuple[bytes, ...]
    """Raw NAL units (no start code) from the fmtp: H.264 SPS/PPS, or H.265 VPS/SPS/PPS in that order."""
    fmtp: Mapping[str, str]
    """Every fmtp parameter, names lower-cased (read-only)."""

    @property
    def donl(self) -> bool:
        """H.265 payloads carry DONL/DOND fields: ``sprop-max-don-diff`` > 0 (RFC 7798 4.4)."""
        return self.codec == "H265" and int(self.fmtp.get("sprop-max-don-diff", "0")) > 0


def parse_sdp(text: str) -> VideoFormat:
    """Parse SDP text with aiortsp's parser and describe its first video media.

    Raises only ``SdpError`` (the defects ``video_format`` names). aiortsp's parser itself
    never raises: it keeps each line it cannot parse (``v=1``, a malformed ``a=rtpmap``) as an
    unknown line, so such text ends as "no video media" or "no valid a=rtpmap" here.
    """
    return video_format(SDP(text))


def video_format(sdp: Mapping[str, Any]) -> VideoFormat:
    """Describe the first video media of ``sdp``.

    Raises ``SdpError`` naming what is missing or bad: no video media, no rtpmap, an
    unsupported codec, invalid base64 parameter sets, interleaved H.264 packetization, or an
    H.265 ``sprop-max-don-diff`` that is not an integer in 0..32767.
    """
    media = next((m for m in sdp.get("medias", ()) if m.get("type") == "video"), None)
    if media is None:
        raise SdpError("SDP has no video media (m=video)")
    attributes = media.get("attributes", {})

    rtpmap = attributes.get("rtpmap")
    if not isinstance(rtpmap, Mapping):
        raise SdpError("video media has no valid a=rtpmap")
    payload_type = rtpmap["pt"]
    offered = str(media.get("format", "")).split()
    if str(payload_type) not in offered:
        raise SdpError(f"a=rtpmap payload type {payload_type} is not among the m=video formats {offered}")
    codec = rtpmap["encoding"].upper()
    if codec not in SUPPORTED_CODECS:
        raise SdpError(f"video codec {rtpmap['encoding']!r} is not supported (only {', '.join(SUPPORTED_CODECS)})")
    clock_rate = rtpmap["clockRate"]
    if clock_rate <= 0:
        raise SdpError(f"a=rtpmap clock rate must be positive, got {clock_rate}")

    fmtp_attribute = attributes.get("fmtp", {})
    if not isinstance(fmtp_attribute, Mapping):
        raise SdpError(f"video a=fmtp is not valid: {fmtp_attribute!r}")
    if fmtp_attribute.get("pt", payload_type) != payload_type:
        raise SdpError(f"a=fmtp is for payload type {fmtp_attribute['pt']}, a=rtpmap for {payload_type}")
    fmtp = {str(name).lower(): str(value) for name, value in fmtp_attribute.items() if name != "pt"}

    if codec == "H264":
        mode = fmtp.get("packetization-mode", "0")
        if mode not in ("0", "1"):
            raise SdpError(f"H264 packetization-mode={mode} is not supported (only 0 and 1, non-interleaved)")
        parameter_sets = _decode_parameter_sets(fmtp, ("sprop-parameter-sets",))
    else:
        max_don_diff = fmtp.get("sprop-max-don-diff", "0")
        if not (max_don_diff.isdecimal() and max_don_diff.isascii() and int(max_don_diff) <= MAX_DON_DIFF):
            raise SdpError(f"H265 sprop-max-don-diff={max_don_diff} is not an integer in 0..{MAX_DON_DIFF}")
        parameter_sets = _decode_parameter_sets(fmtp, H265_PARAMETER_SET_KEYS)

    return VideoFormat(codec, payload_type, clock_rate, parameter_sets, MappingProxyType(fmtp))


def _decode_parameter_sets(fmtp: Mapping[str, str], keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """Decode the comma-separated base64 NAL units of each fmtp parameter in ``keys``, in order."""
    nals = []
    for key in keys:
        for text in filter(None, (part.strip() for part in fmtp.get(key, "").split(","))):
            # Some cameras leave out the trailing "=" padding.
            padded = text + "=" * (-len(text) % 4)
            try:
                nal = base64.b64decode(padded, validate=True)
            except ValueError as error:  # binascii.Error, or non-ASCII text
                raise SdpError(f"fmtp {key} holds invalid base64 {text!r}") from error
            nals.append(nal)
    return tuple(nals)
