"""H265Depacketizer: RFC 7798 vectors, round trips of a real libx265 stream, DONL, loss, garbage."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from depacketizer_helpers import decoded_frames, drops, feed_all, rtp, units
from rtp_packetizer import annexb, split_annexb
from rtp_packetizer_h265 import AP, FU, PACI, H265Packetizer, nal_type

from dalistream.rtp import depacketizer_for
from dalistream.rtp.depacketizer import AccessUnit, AccessUnitDropped, PacketLoss
from dalistream.rtp.h264 import H264Depacketizer
from dalistream.rtp.h265 import H265Depacketizer
from dalistream.rtp.packet import RtpPacket
from dalistream.rtp.sdp import VideoFormat

# NAL unit header: F(1) Type(6) LayerId(6) TID(3); these have LayerId 0, TID 1.
VPS = bytes.fromhex("40010c01ff")
SPS = bytes.fromhex("420101016000")
PPS = bytes.fromhex("4401c172b4")
IDR = bytes.fromhex("2601af0610")  # IDR_W_RADL (19)
CRA = bytes.fromhex("2a01af0610")  # CRA_NUT (21)
TRAIL = bytes.fromhex("0201d00a")  # TRAIL_R (1)
AUD = bytes.fromhex("460150")
SEI = bytes.fromhex("4e01050102")

FRAMES = 30
GOP = 10  # frames; IDR access units are 0, 10, 20
FRAME_TICKS = 3000  # 90 kHz / 30 fps
PARAMETER_SET_TYPES = (32, 33, 34)












@pytest.fixture(scope="module")
def camera_stream() -> list[list[bytes]]:
    """A real libx265 stream (no B-frames, IDR with VPS/SPS/PPS every 10 frames) as NAL units per access unit."""
    buffer = io.BytesIO()
    access_units = []
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    x265_params = (f"keyint={GOP}:min-keyint={GOP}:scenecut=0:open-gop=0:bframes=0:repeat-headers=1"
                   ":pools=none:frame-threads=1:log-level=error")
    with av.open(buffer, "w", format="hevc") as container:
        stream = container.add_stream("libx265", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "yuv420p"
        stream.options = {"preset": "ultrafast", "x265-params": x265_params}
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.roll(texture, 3 * index, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                access_units.append(bytes(packet))
                container.mux(packet)
        for packet in stream.encode():
            access_units.append(bytes(packet))
            container.mux(packet)
    assert b"".join(access_units) == buffer.getvalue()
    assert len(access_units) == FRAMES
    return [split_annexb(access_unit) for access_unit in access_units]


def is_irap(nals: Sequence[bytes]) -> bool:
    return any(16 <= nal_type(nal) <= 21 for nal in nals)


def parameter_sets_of(stream: list[list[bytes]]) -> list[bytes]:
    return [nal for nal in stream[0] if nal_type(nal) in PARAMETER_SET_TYPES]


def without_parameter_sets(stream: list[list[bytes]]) -> list[list[bytes]]:
    return [[nal for nal in nals if nal_type(nal) not in PARAMETER_SET_TYPES] for nals in stream]


def test_camera_stream_has_what_the_tests_rely_on(camera_stream: list[list[bytes]]) -> None:
    assert [is_irap(nals) for nals in camera_stream] == [index % GOP == 0 for index in range(FRAMES)]
    assert [nal_type(nal) for nal in parameter_sets_of(camera_stream)] == [32, 33, 34]
    assert max(len(nal) for nals in camera_stream for nal in nals) > 1500  # FUs at common MTUs


# --- RFC 7798 vectors -------------------------------------------------------------------------


def test_single_nal_unit_packets() -> None:
    events = feed_all(H265Depacketizer(), [
        rtp(VPS, seq=1), rtp(SPS, seq=2), rtp(PPS, seq=3), rtp(IDR, seq=4, marker=True),
        rtp(TRAIL, seq=5, ts=3000, marker=True),
    ])
    assert events == [
        AccessUnit(ts=0, key=True, data=annexb([VPS, SPS, PPS, IDR])),
        AccessUnit(ts=3000, key=False, data=bytes.fromhex("00000001 0201d00a")),
    ]


def test_aggregation_packet_with_parameter_sets_and_idr() -> None:
    ap = "6001 0005 40010c01ff 0006 420101016000 0005 4401c172b4 0005 2601af0610"
    [event] = feed_all(H265Depacketizer(), [rtp(ap, seq=7, ts=90_000, marker=True)])
    assert event == AccessUnit(ts=90_000, key=True, data=annexb([VPS, SPS, PPS, IDR]))


def test_fragmentation_unit_start_middle_end() -> None:
    # IDR_W_RADL (19 = 0x13) NAL unit 26 01 | 01..06 in three FUs.
    events = feed_all(H265Depacketizer([VPS, SPS, PPS]), [
        rtp("6201 93 0102", seq=1),
        rtp("6201 13 0304", seq=2),
        rtp("6201 53 0506", seq=3, marker=True),
    ])
    assert events == [AccessUnit(ts=0, key=True, data=annexb([VPS, SPS, PPS, bytes.fromhex("2601010203040506")]))]


def test_fragmentation_unit_keeps_f_layer_id_and_tid_of_the_payload_header() -> None:
    # Payload header 63 0c: F=0, type 49, LayerId 0b100001 (33), TID 4; FuType 1 -> NAL header 03 0c.
    events = feed_all(H265Depacketizer(), [
        rtp(IDR, seq=1, marker=True),
        rtp("630c 81 aa", seq=2, ts=3000),
        rtp("630c 41 bb", seq=3, ts=3000, marker=True),
    ])
    assert units(events)[1].data == annexb([bytes.fromhex("030caabb")])


def test_aud_and_sei_pass_through() -> None:
    [event] = feed_all(H265Depacketizer(), [
        rtp(AUD, seq=1), rtp(SEI, seq=2), rtp(VPS, seq=3), rtp(SPS, seq=4), rtp(PPS, seq=5), rtp(IDR, seq=6, marker=True),
    ])
    assert event == AccessUnit(ts=0, key=True, data=annexb([AUD, SEI, VPS, SPS, PPS, IDR]))


@pytest.mark.parametrize("nal_unit_type", range(16, 22))
def test_every_irap_type_is_a_key(nal_unit_type: int) -> None:
    irap = bytes([nal_unit_type << 1, 0x01, 0xAF])
    events = feed_all(H265Depacketizer(), [rtp(irap, seq=1, marker=True), rtp(TRAIL, seq=2, ts=3000, marker=True)])
    assert [unit.key for unit in units(events)] == [True, False]


def test_the_edges_of_what_is_a_nal_unit_and_a_fragment() -> None:
    events = feed_all(H265Depacketizer(), [
        rtp(IDR, seq=1, marker=True),
        rtp("6001 0002 5e01", seq=2, ts=3000, marker=True),  # an AP holding type 47, the last NAL unit type
        rtp("6201 af aa", seq=3, ts=6000),  # an FU of type 47
        rtp("6201 6f", seq=4, ts=6000, marker=True),  # its end with no bytes
    ])
    assert units(events) == [AccessUnit(0, True, annexb([IDR])), AccessUnit(3000, False, annexb([b"\x5e\x01"])),
                             AccessUnit(6000, False, annexb([b"\x5e\x01\xaa"]))]  # fmt: skip
    donl_start = [rtp("6201 93 0000", seq=1), rtp("6201 53 aa", seq=2, marker=True)]  # a start that is all DONL
    assert units(feed_all(H265Depacketizer(donl=True), donl_start)) == [AccessUnit(0, True, annexb([b"\x26\x01\xaa"]))]
    fragmented_idr = [rtp("6201 93 aa", seq=1), rtp("6201 53", seq=2, marker=True)]  # 4 + 3 Annex-B bytes
    assert units(feed_all(H265Depacketizer(max_access_unit_bytes=7), fragmented_idr)) == [AccessUnit(0, True, annexb([b"\x26\x01\xaa"]))]
    assert units(feed_all(H265Depacketizer(max_access_unit_bytes=6), fragmented_idr)) == []
    idr = IDR + bytes(8_000_000 - 4 - len(IDR))
    assert units(feed_all(H265Depacketizer(), [rtp(idr, seq=1, marker=True)])) == [AccessUnit(0, True, annexb([idr]))]
    too_large = feed_all(H265Depacketizer(), [rtp(IDR, seq=1, marker=True), rtp(idr + b"\x00", seq=2, ts=3000, marker=True)])
    assert drops(too_large) == [(3000, "too_large")]


def test_donl_is_stripped_from_single_ap_and_fu_packets() -> None:
    events = feed_all(H265Depacketizer(donl=True), [
        rtp("4001 0000 0c01ff", seq=1),  # VPS with DONL 0
        rtp("6001 0001 0006 420101016000 00 0005 4401c172b4", seq=2),  # AP: DONL 1, DOND 0
        rtp("6201 93 0003 af", seq=3),  # FU start with DONL 3
        rtp("6201 53 0610", seq=4, marker=True),
        rtp("0201 0004 d00a", seq=5, ts=3000, marker=True),
    ])
    assert events == [
        AccessUnit(0, True, annexb([VPS, SPS, PPS, IDR])),
        AccessUnit(3000, False, annexb([TRAIL])),
    ]


@pytest.mark.parametrize("ignored", ["6401 0000 aaaa", "6601 aa", "7e01 aa", "7f01"])  # PACI (50), 51, 63
def test_paci_and_unspecified_types_are_ignored_and_counted(ignored: str) -> None:
    depacketizer = H265Depacketizer()
    events = feed_all(depacketizer, [
        rtp(IDR, seq=1), rtp(ignored, seq=2), rtp(ignored, seq=3, ts=3000, marker=True),
        rtp(TRAIL, seq=4, ts=6000, marker=True),
    ])
    assert events == [AccessUnit(0, True, annexb([IDR])), AccessUnit(6000, False, annexb([TRAIL]))]
    assert depacketizer.ignored_packets == 2


# --- round trips through the packetizer -------------------------------------------------------


@pytest.mark.parametrize("donl", [False, True], ids=["plain", "donl"])
def test_camera_stream_round_trip_decodes(camera_stream: list[list[bytes]], donl: bool) -> None:
    packets = H265Packetizer(1200, donl=donl).packetize_all(camera_stream)
    events = feed_all(H265Depacketizer(donl=donl), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert [unit.key for unit in units(events)] == [is_irap(nals) for nals in camera_stream]
    assert [unit.ts for unit in units(events)] == [index * FRAME_TICKS for index in range(FRAMES)]
    assert decoded_frames(b"".join(unit.data for unit in units(events)), "hevc") == FRAMES


MTUS = [*range(60, 1501, 80), 1459, 65_000]


@pytest.mark.parametrize("donl", [False, True], ids=["plain", "donl"])
@pytest.mark.parametrize("max_payload_bytes", MTUS)
def test_fragmented_at_any_mtu_gives_identical_access_units(
    camera_stream: list[list[bytes]], max_payload_bytes: int, donl: bool
) -> None:
    expected = [annexb(nals) for nals in camera_stream]
    packets = H265Packetizer(max_payload_bytes, donl=donl).packetize_all(camera_stream)
    assert [unit.data for unit in units(feed_all(H265Depacketizer(donl=donl), packets))] == expected


def test_every_packet_type_is_exercised(camera_stream: list[list[bytes]]) -> None:
    """The MTUs above produce single NAL unit, AP and FU packets of the real stream."""
    packets = [packet for mtu in (300, 1200, 4000) for packet in H265Packetizer(mtu).packetize_all(camera_stream)]
    types = {packet.payload[0] >> 1 & 0x3F for packet in packets}
    assert {AP, FU} <= types and types - {AP, FU}


def test_no_aggregation_and_sequence_wrap(camera_stream: list[list[bytes]]) -> None:
    packets = H265Packetizer(500, aggregate=False, first_seq=0xFFF0, donl=True, first_don=0xFFF0).packetize_all(
        camera_stream, first_ts=0xFFFF_0000)
    events = feed_all(H265Depacketizer(donl=True), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert events[-1].ts == (0xFFFF_0000 + (FRAMES - 1) * FRAME_TICKS) & 0xFFFF_FFFF


def test_missing_marker_ends_access_unit_on_timestamp_change(camera_stream: list[list[bytes]]) -> None:
    packets = [dataclasses.replace(packet, marker=False) for packet in H265Packetizer(700).packetize_all(camera_stream)]
    depacketizer = H265Depacketizer()
    events = feed_all(depacketizer, packets, flush=False)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream[:-1]]
    assert depacketizer.flush() == [AccessUnit((FRAMES - 1) * FRAME_TICKS, False, annexb(camera_stream[-1]))]
    assert depacketizer.flush() == []


def test_duplicated_packets_are_ignored(camera_stream: list[list[bytes]]) -> None:
    packets = H265Packetizer(900).packetize_all(camera_stream)
    depacketizer = H265Depacketizer()
    events = feed_all(depacketizer, [copy for packet in packets for copy in (packet, packet)])
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert depacketizer.late_packets == len(packets)


# --- parameter sets from the SDP --------------------------------------------------------------


def test_sdp_parameter_sets_go_before_first_irap(camera_stream: list[list[bytes]]) -> None:
    parameter_sets = parameter_sets_of(camera_stream)
    stream = without_parameter_sets(camera_stream)
    events = feed_all(H265Depacketizer(parameter_sets), H265Packetizer(1200).packetize_all(stream))
    expected = [annexb(parameter_sets + stream[0])] + [annexb(nals) for nals in stream[1:]]
    assert [unit.data for unit in events] == expected
    assert decoded_frames(b"".join(unit.data for unit in units(events)), "hevc") == FRAMES


def test_in_band_parameter_sets_are_not_duplicated(camera_stream: list[list[bytes]]) -> None:
    events = feed_all(H265Depacketizer([VPS, SPS, PPS]), H265Packetizer(1200).packetize_all(camera_stream))
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]


def test_parameter_sets_go_after_access_unit_delimiter() -> None:
    packets = [rtp(AUD, seq=1), rtp(SEI, seq=2), rtp(CRA, seq=3, marker=True)]
    [event] = feed_all(H265Depacketizer([VPS, SPS, PPS]), packets)
    assert event.data == annexb([AUD, VPS, SPS, PPS, SEI, CRA])


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="empty"):
        H265Depacketizer([VPS, b""])
    with pytest.raises(ValueError, match="max_access_unit_bytes"):
        H265Depacketizer(max_access_unit_bytes=0)


# --- joining late, loss and recovery ----------------------------------------------------------


def test_joining_mid_gop_waits_for_irap(camera_stream: list[list[bytes]]) -> None:
    parameter_sets = parameter_sets_of(camera_stream)
    stream = without_parameter_sets(camera_stream)
    packets = H265Packetizer(300).packetize_all(stream)
    first = next(index for index, packet in enumerate(packets) if packet.ts == 3 * FRAME_TICKS) + 1  # mid access unit
    events = feed_all(H265Depacketizer(parameter_sets), packets[first:])
    assert drops(events) == [(index * FRAME_TICKS, "waiting_for_idr") for index in range(3, GOP)]
    emitted = units(events)
    assert emitted[0] == AccessUnit(GOP * FRAME_TICKS, True, annexb(parameter_sets + stream[GOP]))
    assert [unit.data for unit in emitted[1:]] == [annexb(nals) for nals in stream[GOP + 1:]]
    assert decoded_frames(b"".join(unit.data for unit in emitted), "hevc") == FRAMES - GOP


@pytest.mark.parametrize("donl", [False, True], ids=["plain", "donl"])
def test_loss_drops_until_next_irap_then_recovers(camera_stream: list[list[bytes]], donl: bool) -> None:
    parameter_sets = parameter_sets_of(camera_stream)
    stream = without_parameter_sets(camera_stream)
    packets = H265Packetizer(300, donl=donl).packetize_all(stream)
    in_frame_13 = [index for index, packet in enumerate(packets) if packet.ts == 13 * FRAME_TICKS]
    lost = in_frame_13[len(in_frame_13) // 2]
    events = feed_all(H265Depacketizer(parameter_sets, donl=donl), packets[:lost] + packets[lost + 1:])

    seq = packets[lost].seq
    assert [event for event in events if isinstance(event, PacketLoss)] == [PacketLoss(seq, seq + 1, 1)]
    assert drops(events) == [(index * FRAME_TICKS, "loss") for index in range(13, 20)]
    emitted = units(events)
    assert [unit.ts // FRAME_TICKS for unit in emitted] == [*range(13), *range(20, FRAMES)]
    # The IRAP that ends the loss gets the parameter sets again.
    assert emitted[13].data == annexb(parameter_sets + stream[20])
    assert decoded_frames(b"".join(unit.data for unit in emitted), "hevc") == len(emitted)


def test_loss_of_irap_head_waits_for_the_following_irap(camera_stream: list[list[bytes]]) -> None:
    packets = H265Packetizer(300).packetize_all(camera_stream)
    irap_head = next(index for index, packet in enumerate(packets) if packet.ts == GOP * FRAME_TICKS)
    events = feed_all(H265Depacketizer(), packets[:irap_head] + packets[irap_head + 1:])
    assert drops(events) == [(index * FRAME_TICKS, "loss") for index in range(GOP, 2 * GOP)]
    assert [unit.ts // FRAME_TICKS for unit in units(events)] == [*range(GOP), *range(2 * GOP, FRAMES)]


def test_new_ssrc_restarts_the_stream() -> None:
    events = feed_all(H265Depacketizer(), [
        rtp(IDR, seq=100, marker=True),
        rtp(TRAIL, seq=101, ts=3000),  # marker never comes: the old stream ends here
        rtp(TRAIL, seq=5000, ts=77, marker=True, ssrc=2),
        rtp(CRA, seq=5001, ts=3077, marker=True, ssrc=2),
    ])
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        AccessUnit(3000, False, annexb([TRAIL])),
        AccessUnitDropped(77, "waiting_for_idr"),
        AccessUnit(3077, True, annexb([CRA])),
    ]


# --- malformed payloads -----------------------------------------------------------------------

MALFORMED = {
    "empty payload": [""],
    "one byte": ["02"],
    "FU without FU header": ["6201"],
    "FU continuation without start": ["6201 01 aa", "6201 41 bb"],
    "FU start while one is open": ["6201 81 aa", "6201 81 bb", "6201 41 cc"],
    "FU type changes": ["6201 81 aa", "6201 53 bb"],
    "FU of an AP": ["6201 b0 aa", "6201 70 bb"],
    "FU of an FU": ["6201 b1 aa", "6201 71 bb"],
    "FU interrupted by a NAL unit": ["6201 81 aa", "0201d00a", "6201 41 bb"],
    "FU interrupted by the last NAL unit": ["6201 81 aa", "0201d00a"],
    "FU started again at the end": ["6201 81 aa", "6201 81 bb"],
    "FU interrupted by an AP": ["6201 81 aa", "6001 0004 0201d00a", "6201 41 bb"],
    "FU open at marker": ["6201 81 aa", "6201 01 bb"],
    "AP empty": ["6001"],
    "AP truncated size": ["6001 0004 0201d00a 00"],
    "AP size overruns": ["6001 0009 0201d00a"],
    "AP unit shorter than a NAL header": ["6001 0001 02"],
    "AP nests an AP": ["6001 0004 6001 0000"],
    "AP holds a PACI": ["6001 0003 6401 00"],
}

MALFORMED_WITH_DONL = {
    "single without DONL": ["0201 00"],
    "AP truncated DONL": ["6001 00"],
    "AP truncated DOND": ["6001 0000 0004 0201d00a 00"],  # a DOND and no size
    "FU start truncated DONL": ["6201 81 00"],
}


def malformed_case(payloads: list[str], donl: bool) -> None:
    def with_donl(nal: bytes) -> bytes:
        return nal[:2] + bytes(2) + nal[2:] if donl else nal

    packets = [rtp(with_donl(IDR), seq=1, marker=True)]
    last = len(payloads) - 1
    packets += [rtp(payload, seq=2 + index, ts=3000, marker=index == last) for index, payload in enumerate(payloads)]
    seq = packets[-1].seq
    packets += [rtp(with_donl(TRAIL), seq=seq + 1, ts=6000, marker=True), rtp(with_donl(CRA), seq=seq + 2, ts=9000, marker=True)]
    events = feed_all(H265Depacketizer(donl=donl), packets)
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        AccessUnitDropped(3000, "malformed"),
        AccessUnitDropped(6000, "loss"),
        AccessUnit(9000, True, annexb([CRA])),
    ]


@pytest.mark.parametrize("payloads", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_access_unit_is_dropped_until_next_irap(payloads: list[str]) -> None:
    malformed_case(payloads, donl=False)


@pytest.mark.parametrize("payloads", MALFORMED_WITH_DONL.values(), ids=MALFORMED_WITH_DONL.keys())
def test_malformed_donl_access_unit_is_dropped_until_next_irap(payloads: list[str]) -> None:
    malformed_case(payloads, donl=True)


def test_too_large_access_unit_is_dropped_and_released() -> None:
    depacketizer = H265Depacketizer(max_access_unit_bytes=100)
    body = bytes(range(1, 120))
    events = depacketizer.feed(rtp(IDR, seq=1, marker=True))
    events += depacketizer.feed(rtp(b"\x62\x01\x81" + body[:60], seq=2, ts=3000))
    assert 0 < depacketizer.buffered_bytes <= 100
    events += depacketizer.feed(rtp(b"\x62\x01\x01" + body[60:], seq=3, ts=3000))
    assert depacketizer.buffered_bytes == 0
    events += depacketizer.feed(rtp(b"\x62\x01\x41\x01", seq=4, ts=3000, marker=True))
    events += feed_all(depacketizer, [rtp(IDR, seq=5, ts=6000, marker=True)])
    assert events == [
        AccessUnit(0, True, annexb([IDR])), AccessUnitDropped(3000, "too_large"), AccessUnit(6000, True, annexb([IDR])),
    ]


# --- choosing the depacketizer from the SDP ---------------------------------------------------


@pytest.mark.parametrize(("codec", "fmtp", "kind", "donl"), [
    ("H264", {"packetization-mode": "1"}, H264Depacketizer, False),
    ("H265", {}, H265Depacketizer, False),
    ("H265", {"sprop-max-don-diff": "0"}, H265Depacketizer, False),
    ("H265", {"sprop-max-don-diff": "2"}, H265Depacketizer, True),
])
def test_depacketizer_for_the_video_format(codec: str, fmtp: dict[str, str], kind: type, donl: bool) -> None:
    depacketizer = depacketizer_for(VideoFormat(codec, 96, 90_000, (VPS, SPS, PPS), fmtp))
    assert type(depacketizer) is kind
    # The parameter sets and the DONL setting took effect: a DONL-carrying IRAP without them.
    irap = IDR[:2] + bytes(2) + IDR[2:] if donl else IDR
    events = feed_all(depacketizer, [rtp(irap, seq=1, marker=True)])
    if kind is H265Depacketizer:
        assert events == [AccessUnit(0, True, annexb([VPS, SPS, PPS, IDR]))]


def test_depacketizer_for_an_unknown_codec_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="VP8"):
        depacketizer_for(VideoFormat("VP8", 96, 90_000, (), {}))


# --- property tests ---------------------------------------------------------------------------

nal_units = st.builds(
    lambda header, body: header + body,
    st.sampled_from([TRAIL[:2], bytes.fromhex("0001"), IDR[:2], CRA[:2], SEI[:2], VPS[:2], SPS[:2], PPS[:2],
                     AUD[:2], bytes.fromhex("0209"), bytes.fromhex("8001")]),  # also LayerId 1, TID 1 and F=1
    st.binary(min_size=0, max_size=400),
)
access_unit_lists = st.lists(st.lists(nal_units, min_size=1, max_size=6), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(access_unit_lists, st.integers(6, 300), st.booleans(), st.booleans())
def test_any_access_units_survive_any_mtu(
    access_units: list[list[bytes]], max_payload_bytes: int, aggregate: bool, donl: bool
) -> None:
    access_units[0].append(IDR)  # decoding starts at an IRAP
    packets = H265Packetizer(max_payload_bytes, aggregate=aggregate, donl=donl).packetize_all(access_units)
    events = feed_all(H265Depacketizer(donl=donl), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in access_units]


payload_types = st.sampled_from([0, 1, 19, 21, 32, 33, 34, 35, 39, 47, AP, FU, PACI, 51, 63])
hostile_payloads = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda kind, rest: bytes([kind << 1, 0x01]) + rest, payload_types, st.binary(max_size=40)),
    st.builds(lambda fu_header, rest: bytes([FU << 1, 0x01, fu_header]) + rest, st.integers(0, 255),
              st.binary(max_size=60)),
)
hostile_packets = st.builds(
    RtpPacket,
    pt=st.integers(0, 127),
    marker=st.booleans(),
    seq=st.integers(0, 0xFFFF) | st.integers(0, 5),
    ts=st.sampled_from([0, 3000, 6000, 0xFFFF_FFFF]),
    ssrc=st.sampled_from([1, 1, 1, 2]),
    payload=hostile_payloads,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile_packets, max_size=40), st.integers(1, 120), st.booleans())
def test_hostile_packets_never_raise_and_stay_bounded(packets: list[RtpPacket], max_access_unit_bytes: int,
                                                      donl: bool) -> None:
    depacketizer = H265Depacketizer([VPS, SPS, PPS], max_access_unit_bytes=max_access_unit_bytes, donl=donl)
    for packet in packets:
        for event in depacketizer.feed(packet):
            assert isinstance(event, AccessUnit | PacketLoss | AccessUnitDropped)
            if isinstance(event, AccessUnit):
                assert event.data.startswith(b"\x00\x00\x00\x01")
        assert depacketizer.buffered_bytes <= max_access_unit_bytes
    depacketizer.flush()
    assert depacketizer.buffered_bytes == 0
