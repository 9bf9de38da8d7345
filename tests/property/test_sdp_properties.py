"""Hostile SDP: whatever text a camera sends, parse_sdp() answers a VideoFormat or an SdpError.

And a VideoFormat it answers always makes a depacketizer: nothing a peer writes in its SDP may
turn into a local error further down.
"""

from __future__ import annotations

import base64

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dalistream.rtp import depacketizer_for
from dalistream.rtp.sdp import H265_PARAMETER_SET_KEYS, MAX_DON_DIFF, SUPPORTED_CODECS, SdpError, VideoFormat, parse_sdp

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
def test_any_text_raises_nothing_but_sdp_error(text: str) -> None:
    """Random text is never a valid SDP (none of 1,000 draws is): this checks the errors only;
    the success path is test_camera_sdp_is_read_exactly's and test_garbled_camera_sdp's."""
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



def b64(nal: bytes, padded: bool) -> str:
    text = base64.b64encode(nal).decode()
    return text if padded else text.rstrip("=")


@st.composite
def camera_sdps(draw: st.DrawFn) -> tuple[list[str], str, VideoFormat]:
    """A camera's SDP as cameras write it, its lines and newline, and the format it describes."""
    codec = draw(st.sampled_from(["H264", "H265"]))
    pt = draw(st.integers(96, 127))
    clock = draw(st.sampled_from([90000, 90000, 1, 2**32 - 1]))
    nals = st.lists(st.binary(min_size=1, max_size=24), max_size=2)
    padded = draw(st.booleans())
    fmtp: dict[str, str] = {}
    if draw(st.booleans()):
        fmtp["profile-level-id"] = draw(st.sampled_from(["42e01f", "640028", "1"]))
    if codec == "H264":
        if (mode := draw(st.sampled_from([None, "0", "1"]))) is not None:
            fmtp["packetization-mode"] = mode
        parameter_sets = draw(nals)
        if parameter_sets:
            fmtp["sprop-parameter-sets"] = ",".join(b64(nal, padded) for nal in parameter_sets)
    else:
        if (don := draw(st.sampled_from([None, 0, 1, MAX_DON_DIFF]))) is not None:
            fmtp["sprop-max-don-diff"] = str(don)
        parameter_sets = []
        for key in H265_PARAMETER_SET_KEYS:
            if sets := draw(nals):
                fmtp[key] = ",".join(b64(nal, padded) for nal in sets)
                parameter_sets += sets
    order = draw(st.permutations(sorted(fmtp)))
    names = [draw(st.sampled_from([name, name.upper(), name.title()])) for name in order]
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=Session streamed by a camera", "t=0 0", "a=control:*"]
    if draw(st.booleans()):
        lines += ["m=audio 0 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=control:track2"]
    formats = draw(st.sampled_from([f"{pt}", f"{pt} 126", f"35 {pt}"]))
    lines += [f"m=video 0 RTP/AVP {formats}", "b=AS:5000", f"a=rtpmap:{pt} {draw(st.sampled_from([codec, codec.lower()]))}/{clock}"]
    if fmtp:
        separator = draw(st.sampled_from([";", "; "]))
        lines.append(f"a=fmtp:{pt} " + separator.join(f"{name}={fmtp[key]}" for name, key in zip(names, order)))
    lines += draw(st.lists(st.sampled_from(["a=control:track1", "a=framerate:25", "a=recvonly", "a=framesize:96 1920-1080"]), max_size=3))
    expected = VideoFormat(codec, pt, clock, tuple(parameter_sets), fmtp)
    return lines, draw(st.sampled_from(["\r\n", "\n", "\r"])), expected


@settings(max_examples=300, deadline=None)
@given(camera_sdps())
def test_camera_sdp_is_read_exactly(sdp: tuple[list[str], str, VideoFormat]) -> None:
    lines, newline, expected = sdp
    fmt = outcome(newline.join(lines) + newline)
    assert fmt is not None
    assert (fmt.codec, fmt.payload_type, fmt.clock_rate, fmt.parameter_sets) == (
        expected.codec, expected.payload_type, expected.clock_rate, expected.parameter_sets
    )
    assert dict(fmt.fmtp) == expected.fmtp


@st.composite
def garbled_camera_sdps(draw: st.DrawFn) -> str:
    """A camera's SDP with lines dropped, and hostile lines put anywhere."""
    lines, newline, _ = draw(camera_sdps())
    for _ in range(draw(st.integers(1, 4))):
        if lines and draw(st.booleans()):
            del lines[draw(st.integers(0, len(lines) - 1))]
        else:
            line = draw(st.one_of(media_lines, rtpmap_lines, fmtp_lines, other_lines, st.text(max_size=30)))
            lines.insert(draw(st.integers(0, len(lines))), line)
    return newline.join(lines) + newline


@settings(max_examples=1000, deadline=None)
@given(garbled_camera_sdps())
def test_garbled_camera_sdp(text: str) -> None:
    """An SdpError, or a supported format whose payload type an m=video line offers."""
    fmt = outcome(text)
    if fmt is not None:
        assert fmt.codec in SUPPORTED_CODECS and fmt.clock_rate > 0
        offered = [line.split()[3:] for line in text.splitlines() if line.startswith("m=video")]
        assert any(str(fmt.payload_type) in formats for formats in offered), offered


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(fmtp_names, values), max_size=6), st.sampled_from(["H264", "H265"]))
def test_any_fmtp_of_a_valid_video_media(params: list[tuple[str, str]], codec: str) -> None:
    fmtp = ";".join(f"{name}={value}" for name, value in params if "\n" not in value and "\r" not in value)
    text = f"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 {codec}/90000\r\na=fmtp:96 {fmtp}\r\n"
    fmt = outcome(text)
    if fmt is not None:
        assert fmt.codec == codec and fmt.payload_type == 96 and all(fmt.parameter_sets)
