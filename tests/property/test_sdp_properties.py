"""Hostile SDP: whatever text a camera sends, parse_sdp() answers a VideoFormat or an SdpError.

And a VideoFormat it answers always makes a depacketizer: nothing a peer writes in its SDP may
turn into a local error further down.
"""

from __future__ import annotations

import base64

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dalistream.rtp import depacketizer_for
from dalistream.rtp.sdp import SdpError, VideoFormat, parse_sdp

NAL = base64.b64encode(bytes.fromhex("40010c01ff")).decode()


def outcome(text: str) -> VideoFormat | None:
    """parse_sdp's answer, None for an SdpError; any other exception fails the test."""
    try:
        fmt = parse_sdp(text)
    except SdpError:
        return None
    depacketizer_for(fmt)
    return fmt


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
@example("v=1\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
@example("m=video 0 RTP/AVP 96\na=rtpmap:96 H265/90000\na=fmtp:96 sprop-vps=\u00e9")
@example("m=video 0 RTP/AVP 96\na=rtpmap:96 H265/90000\na=fmtp:96 sprop-max-don-diff=\u0663")
def test_any_text(text: str) -> None:
    outcome(text)


values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "1", "2", "32767", "32768", "-1", "", "=", "==", NAL, NAL.rstrip("="), f"{NAL},,{NAL}",
                     "\u0663", "\u00b2", "Z2Q!", "\x00"]),
)
fmtp_names = st.sampled_from(["packetization-mode", "sprop-parameter-sets", "sprop-vps", "sprop-sps", "sprop-pps",
                              "sprop-max-don-diff", "profile-id", "pt", "PT", "Sprop-VPS"])
fmtp_lines = st.builds(
    lambda pt, params, tail: f"a=fmtp:{pt} " + ";".join(f"{name}={value}" for name, value in params) + tail,
    st.sampled_from(["96", "97", "x", "-1", "999999999999999999999"]),
    st.lists(st.tuples(fmtp_names, values), max_size=5),
    st.sampled_from(["", ";", ";;", " "]),
)
rtpmap_lines = st.builds(
    lambda pt, codec, clock: f"a=rtpmap:{pt} {codec}/{clock}",
    st.sampled_from(["96", "97", "0", "127", "99999999999999999999"]),
    st.sampled_from(["H264", "h265", "H265", "JPEG", "VP8", "", "H264/90000"]),
    st.sampled_from(["90000", "0", "1", "00", "4294967296", "x"]),
)
media_lines = st.builds(
    lambda kind, port, formats: f"m={kind} {port} RTP/AVP {formats}",
    st.sampled_from(["video", "audio", "application"]),
    st.sampled_from(["0", "5000", "5000/2", "x"]),
    st.sampled_from(["96", "97", "96 97", "0", "x", "  96"]),
)
other_lines = st.sampled_from(["v=0", "v=1", "v=x", "s=-", "t=0 0", "t=x", "a=control:*", "a=framerate:x",
                               "a=framerate:25", "a=framesize:96 1920-1080", "a=framesize:x", "b=AS:x", "c=IN IP4 0",
                               "k=prompt", "k=nothing", "z=1 x", "r=x", "a=recvonly", "a=rtpmap", "a=fmtp"])
sdp_texts = st.builds(
    lambda lines, newline: newline.join(lines) + newline,
    st.lists(st.one_of(media_lines, rtpmap_lines, fmtp_lines, other_lines), max_size=12),
    st.sampled_from(["\r\n", "\n", "\r"]),
)


@settings(max_examples=1000, deadline=None)
@given(sdp_texts)
def test_garbled_camera_sdp(text: str) -> None:
    outcome(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(fmtp_names, values), max_size=6), st.sampled_from(["H264", "H265"]))
def test_any_fmtp_of_a_valid_video_media(params: list[tuple[str, str]], codec: str) -> None:
    fmtp = ";".join(f"{name}={value}" for name, value in params if "\n" not in value and "\r" not in value)
    text = f"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 {codec}/90000\r\na=fmtp:96 {fmtp}\r\n"
    fmt = outcome(text)
    if fmt is not None:
        assert fmt.codec == codec and fmt.payload_type == 96 and all(fmt.parameter_sets)
