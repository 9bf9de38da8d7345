"""video_format(): camera SDPs as parsed by aiortsp, and an SdpError naming each defect."""

from __future__ import annotations

import base64
import re

import pytest
from aiortsp.rtsp.sdp import SDP

from dalistream.rtp.sdp import SdpError, VideoFormat, parse_sdp, video_format

H264_SPS = "Z2QAH6zZQFAFuwEQAAADABAAAAMDwPGDGWA="
H264_PPS = "aOvjyyLA"

# As announced by gst-rtsp-server for "( videotestsrc ! x264enc ! rtph264pay name=pay0 pt=96 )".
GSTREAMER_H264 = f"""\
v=0
o=- 1188340656180883 1 IN IP4 127.0.0.1
s=Session streamed with GStreamer
i=rtsp-server
t=0 0
a=tool:GStreamer
a=type:broadcast
a=range:npt=now-
a=control:rtsp://127.0.0.1:8554/test
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:2097
a=rtpmap:96 H264/90000
a=framerate:30
a=fmtp:96 packetization-mode=1;sprop-parameter-sets={H264_SPS},{H264_PPS};\
profile-level-id=64001f;level-asymmetry-allowed=1
a=control:rtsp://127.0.0.1:8554/test/stream=0
a=ts-refclk:local
a=mediaclk:sender
"""

# An IP camera with audio first and an H.265 video track.
CAMERA_H265 = """\
v=0
o=- 1700000000 1 IN IP4 192.168.1.64
s=Media Presentation
t=0 0
a=control:*
m=audio 0 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=control:trackID=2
m=video 0 RTP/AVP 98
a=rtpmap:98 h265/90000
a=fmtp:98 profile-id=1; sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwBdlZgJ; \
sprop-sps=QgEBAWAAAAMAkAAAAwAAAwBdoAKAgC0WWVmkkyvAQEAAAAMAQAAABkI=; sprop-pps=RAHBcrRiQA==
a=control:trackID=1
"""


def h264_sdp(fmtp: str = "packetization-mode=1", rtpmap: str = "96 H264/90000", formats: str = "96") -> SDP:
    lines = ["v=0", "s=-", "t=0 0", f"m=video 0 RTP/AVP {formats}", f"a=rtpmap:{rtpmap}"]
    if fmtp:
        lines.append(f"a=fmtp:96 {fmtp}")
    return SDP("\r\n".join(lines) + "\r\n")


def test_gstreamer_h264() -> None:
    video = video_format(SDP(GSTREAMER_H264))
    assert video == VideoFormat(
        codec="H264",
        payload_type=96,
        clock_rate=90_000,
        parameter_sets=(base64.b64decode(H264_SPS), base64.b64decode(H264_PPS)),
        fmtp={
            "packetization-mode": "1",
            "sprop-parameter-sets": f"{H264_SPS},{H264_PPS}",
            "profile-level-id": "64001f",
            "level-asymmetry-allowed": "1",
        },
    )
    assert [nal[0] & 0x1F for nal in video.parameter_sets] == [7, 8]


def test_camera_h265_after_audio() -> None:
    video = video_format(SDP(CAMERA_H265))
    assert (video.codec, video.payload_type, video.clock_rate) == ("H265", 98, 90_000)
    # VPS, SPS, PPS in that order: nal_unit_type 32, 33, 34 in bits 1..6 of the first header byte.
    assert [nal[0] >> 1 & 0x3F for nal in video.parameter_sets] == [32, 33, 34]
    assert video.fmtp["profile-id"] == "1"


def test_fmtp_is_read_only_with_lower_case_names() -> None:
    video = video_format(h264_sdp("Packetization-Mode=0;PROFILE-LEVEL-ID=42e01f"))
    assert dict(video.fmtp) == {"packetization-mode": "0", "profile-level-id": "42e01f"}
    with pytest.raises(TypeError):
        video.fmtp["packetization-mode"] = "2"  # type: ignore[index]


def test_no_fmtp_means_mode_0_without_parameter_sets() -> None:
    video = video_format(h264_sdp(fmtp=""))
    assert video.parameter_sets == ()
    assert video.fmtp == {}


def test_base64_without_padding_and_stray_commas_are_accepted() -> None:
    unpadded = H264_SPS.rstrip("=")
    video = video_format(h264_sdp(f"packetization-mode=1;sprop-parameter-sets={unpadded},,{H264_PPS},"))
    assert video.parameter_sets == (base64.b64decode(H264_SPS), base64.b64decode(H264_PPS))


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        (SDP("v=0\r\ns=-\r\n"), "SDP has no video media (m=video)"),
        (SDP("v=0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"), "SDP has no video media (m=video)"),
        (SDP("v=0\r\nm=video 0 RTP/AVP 26\r\n"), "video media has no valid a=rtpmap"),
        (h264_sdp(rtpmap="96 H264"), "video media has no valid a=rtpmap"),  # aiortsp cannot parse it
        (h264_sdp(rtpmap="96 JPEG/90000"), "video codec 'JPEG' is not supported (only H264, H265)"),
        (h264_sdp(rtpmap="96 H264/0"), "a=rtpmap clock rate must be positive, got 0"),
        (h264_sdp(rtpmap="97 H264/90000"), "a=rtpmap payload type 97 is not among the m=video formats ['96']"),
        (h264_sdp(rtpmap="97 H264/90000", formats="97"), "a=fmtp is for payload type 96, a=rtpmap for 97"),
        (h264_sdp("packetization-mode=2"), "H264 packetization-mode=2 is not supported"),
        (h264_sdp("packetization-mode=one"), "H264 packetization-mode=one is not supported"),
        (h264_sdp("sprop-parameter-sets=Z2Q!AB,aOvjyyLA"), "fmtp sprop-parameter-sets holds invalid base64 'Z2Q!AB'"),
        (h264_sdp("sprop-parameter-sets=Z2QAH"), "fmtp sprop-parameter-sets holds invalid base64 'Z2QAH'"),
        (h264_sdp("sprop-parameter-sets=="), "fmtp sprop-parameter-sets holds invalid base64 '='"),
        (h264_sdp("sprop-max-don-diff=two", rtpmap="96 H265/90000"), "H265 sprop-max-don-diff=two is not an integer"),
        (h264_sdp("sprop-max-don-diff=32768", rtpmap="96 H265/90000"), "H265 sprop-max-don-diff=32768 is not an integer in"),
        (h264_sdp("sprop-max-don-diff=-1", rtpmap="96 H265/90000"), "H265 sprop-max-don-diff=-1 is not an integer"),
        (h264_sdp("sprop-vps=QAEé", rtpmap="96 H265/90000"), "fmtp sprop-vps holds invalid base64 'QAEé'"),
        (h264_sdp("sprop-pps=RAH*", rtpmap="96 H265/90000"), "fmtp sprop-pps holds invalid base64"),
    ],
)
def test_sdp_error_names_the_defect(sdp: SDP, message: str) -> None:
    with pytest.raises(SdpError, match=f"^{re.escape(message)}"):
        video_format(sdp)


RTPMAP_96 = {"pt": 96, "encoding": "H264", "clockRate": 90000}


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ({"attributes": {"rtpmap": RTPMAP_96}}, "a=rtpmap payload type 96 is not among the m=video formats []"),
        ({"format": "96", "attributes": {"rtpmap": RTPMAP_96, "fmtp": "garbled"}}, "video a=fmtp is not valid: 'garbled'"),
    ],
)
def test_sdp_error_on_what_aiortsp_leaves_out(media: dict, message: str) -> None:
    with pytest.raises(SdpError, match=f"^{re.escape(message)}$"):
        video_format({"medias": [{"type": "video", **media}]})


@pytest.mark.parametrize(("max_don_diff", "donl"), [("0", False), ("1", True), ("32767", True)])
def test_h265_sprop_max_don_diff_means_donl_fields(max_don_diff: str, donl: bool) -> None:
    video = video_format(h264_sdp(f"sprop-max-don-diff={max_don_diff}", rtpmap="96 H265/90000"))
    assert video.donl is donl
    assert not video_format(h264_sdp("sprop-max-don-diff=3")).donl  # only H.265 has DONL fields


def test_parse_sdp_text() -> None:
    assert parse_sdp(CAMERA_H265) == video_format(SDP(CAMERA_H265))
    with pytest.raises(SdpError, match="no video media"):
        parse_sdp("v=1\r\nm=video 0 RTP/AVP 96\r\n".replace("m=video", "m=vidéo"))


def test_sdp_error_is_value_error() -> None:
    assert issubclass(SdpError, ValueError)
