"""H264Depacketizer: RFC 6184 vectors, round trips through the test packetizer, loss, garbage."""

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
from rtp_packetizer import H264Packetizer, annexb, split_annexb

from dalistream.rtp.h264 import FU_A, STAP_A, AccessUnit, AccessUnitDropped, H264Depacketizer, PacketLoss
from dalistream.rtp.packet import RtpPacket

SPS = bytes.fromhex("6742001eab")
PPS = bytes.fromhex("68ce3c80")
IDR = bytes.fromhex("6588840033")
SLICE = bytes.fromhex("419a0203")  # non-IDR slice
AUD = bytes.fromhex("09f0")
SEI = bytes.fromhex("0605010280")

FRAMES = 40
GOP = 10  # frames; IDR access units are 0, 10, 20, 30
FRAME_TICKS = 3000  # 90 kHz / 30 fps












@pytest.fixture(scope="module")
def camera_stream() -> list[list[bytes]]:
    """A real libx264 stream (no B-frames, IDR every 10 frames) as NAL units per access unit."""
    buffer = io.BytesIO()
    access_units = []
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"preset": "ultrafast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"}
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


def is_idr(nals: Sequence[bytes]) -> bool:
    return any(nal[0] & 0x1F == 5 for nal in nals)


def without_parameter_sets(stream: list[list[bytes]]) -> list[list[bytes]]:
    return [[nal for nal in nals if nal[0] & 0x1F not in (7, 8)] for nals in stream]


# --- RFC 6184 vectors -------------------------------------------------------------------------


def test_single_nal_unit_packets() -> None:
    events = feed_all(H264Depacketizer(), [
        rtp(SPS, seq=1), rtp(PPS, seq=2), rtp(IDR, seq=3, marker=True),
        rtp(SLICE, seq=4, ts=3000, marker=True),
    ])
    assert events == [
        AccessUnit(ts=0, key=True, data=bytes.fromhex("00000001 6742001eab 00000001 68ce3c80 00000001 6588840033")),
        AccessUnit(ts=3000, key=False, data=bytes.fromhex("00000001 419a0203")),
    ]


def test_stap_a_with_sps_pps_idr() -> None:
    stap_a = "78 0005 6742001eab 0004 68ce3c80 0005 6588840033"
    [event] = feed_all(H264Depacketizer(), [rtp(stap_a, seq=7, ts=90_000, marker=True)])
    assert event == AccessUnit(ts=90_000, key=True, data=annexb([SPS, PPS, IDR]))


def test_fu_a_start_middle_end() -> None:
    # IDR NAL unit 65 01 02 03 04 05 06 in three FU-A fragments; NRI=3 comes from the FU indicator 7c.
    events = feed_all(H264Depacketizer(), [
        rtp("78 0005 6742001eab 0004 68ce3c80", seq=1),
        rtp("7c 85 0102", seq=2),
        rtp("7c 05 0304", seq=3),
        rtp("7c 45 0506", seq=4, marker=True),
    ])
    assert events == [AccessUnit(ts=0, key=True, data=annexb([SPS, PPS, bytes.fromhex("65010203040506")]))]


def test_fu_a_nal_header_takes_f_and_nri_from_indicator() -> None:
    # Indicator 5c: NRI=2; FU header type 1 -> reconstructed header 41.
    events = feed_all(H264Depacketizer(), [
        rtp("78 0005 6742001eab 0004 68ce3c80 0005 6588840033", seq=1, marker=True),
        rtp("5c 81 aa", seq=2, ts=3000),
        rtp("5c 41 bb", seq=3, ts=3000, marker=True),
    ])
    assert units(events)[1].data == annexb([bytes.fromhex("41aabb")])


def test_aud_and_sei_pass_through() -> None:
    [event] = feed_all(H264Depacketizer(), [
        rtp(AUD, seq=1), rtp(SEI, seq=2), rtp(SPS, seq=3), rtp(PPS, seq=4), rtp(IDR, seq=5, marker=True),
    ])
    assert event == AccessUnit(ts=0, key=True, data=annexb([AUD, SEI, SPS, PPS, IDR]))


# --- round trips through the packetizer -------------------------------------------------------


def test_camera_stream_round_trip_decodes(camera_stream: list[list[bytes]]) -> None:
    packets = H264Packetizer(1200).packetize_all(camera_stream)
    events = feed_all(H264Depacketizer(), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert [unit.key for unit in units(events)] == [is_idr(nals) for nals in camera_stream]
    assert [unit.ts for unit in units(events)] == [index * FRAME_TICKS for index in range(FRAMES)]
    assert decoded_frames(b"".join(unit.data for unit in units(events)), "h264") == FRAMES


@pytest.mark.parametrize("max_payload_bytes", [*range(60, 1501, 60), 1459, 65_000])
def test_fragmented_at_any_mtu_gives_identical_access_units(
    camera_stream: list[list[bytes]], max_payload_bytes: int
) -> None:
    whole = units(feed_all(H264Depacketizer(), H264Packetizer(65_000).packetize_all(camera_stream)))
    packets = H264Packetizer(max_payload_bytes).packetize_all(camera_stream)
    assert units(feed_all(H264Depacketizer(), packets)) == whole


def test_every_packet_type_is_exercised(camera_stream: list[list[bytes]]) -> None:
    """The MTUs above produce single NAL unit, STAP-A and FU-A packets of the real stream."""
    packets = [packet for mtu in (300, 1200, 4000) for packet in H264Packetizer(mtu).packetize_all(camera_stream)]
    assert {1, STAP_A, FU_A} <= {packet.payload[0] & 0x1F for packet in packets}


def test_no_aggregation_and_sequence_wrap(camera_stream: list[list[bytes]]) -> None:
    packets = H264Packetizer(500, aggregate=False, first_seq=0xFFF0).packetize_all(camera_stream, first_ts=0xFFFF_0000)
    events = feed_all(H264Depacketizer(), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert events[-1].ts == (0xFFFF_0000 + (FRAMES - 1) * FRAME_TICKS) & 0xFFFF_FFFF


def test_missing_marker_ends_access_unit_on_timestamp_change(camera_stream: list[list[bytes]]) -> None:
    packets = [dataclasses.replace(packet, marker=False) for packet in H264Packetizer(700).packetize_all(camera_stream)]
    depacketizer = H264Depacketizer()
    events = feed_all(depacketizer, packets, flush=False)
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream[:-1]]
    assert depacketizer.flush() == [AccessUnit((FRAMES - 1) * FRAME_TICKS, False, annexb(camera_stream[-1]))]
    assert depacketizer.flush() == []


def test_duplicated_packets_are_ignored(camera_stream: list[list[bytes]]) -> None:
    packets = H264Packetizer(900).packetize_all(camera_stream)
    depacketizer = H264Depacketizer()
    events = feed_all(depacketizer, [copy for packet in packets for copy in (packet, packet)])
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]
    assert depacketizer.late_packets == len(packets)


# --- parameter sets from the SDP --------------------------------------------------------------


def test_sdp_parameter_sets_go_before_first_idr(camera_stream: list[list[bytes]]) -> None:
    parameter_sets = [nal for nal in camera_stream[0] if nal[0] & 0x1F in (7, 8)]
    stream = without_parameter_sets(camera_stream)
    events = feed_all(H264Depacketizer(parameter_sets), H264Packetizer(1200).packetize_all(stream))
    expected = [annexb(parameter_sets + stream[0])] + [annexb(nals) for nals in stream[1:]]
    assert [unit.data for unit in events] == expected
    assert decoded_frames(b"".join(unit.data for unit in units(events)), "h264") == FRAMES


def test_in_band_parameter_sets_are_not_duplicated(camera_stream: list[list[bytes]]) -> None:
    events = feed_all(H264Depacketizer([SPS, PPS]), H264Packetizer(1200).packetize_all(camera_stream))
    assert [unit.data for unit in events] == [annexb(nals) for nals in camera_stream]


def test_parameter_sets_go_after_access_unit_delimiter() -> None:
    [event] = feed_all(H264Depacketizer([SPS, PPS]), [rtp(AUD, seq=1), rtp(SEI, seq=2), rtp(IDR, seq=3, marker=True)])
    assert event.data == annexb([AUD, SPS, PPS, SEI, IDR])


def test_parameter_sets_are_required_to_be_non_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        H264Depacketizer([SPS, b""])
    with pytest.raises(ValueError, match="max_access_unit_bytes"):
        H264Depacketizer(max_access_unit_bytes=0)


# --- joining late, loss and recovery ----------------------------------------------------------


def test_joining_mid_gop_waits_for_idr(camera_stream: list[list[bytes]]) -> None:
    parameter_sets = [nal for nal in camera_stream[0] if nal[0] & 0x1F in (7, 8)]
    stream = without_parameter_sets(camera_stream)
    packets = H264Packetizer(300).packetize_all(stream)
    first = next(index for index, packet in enumerate(packets) if packet.ts == 3 * FRAME_TICKS) + 2  # mid access unit
    events = feed_all(H264Depacketizer(parameter_sets), packets[first:])
    assert drops(events) == [(index * FRAME_TICKS, "waiting_for_idr") for index in range(3, GOP)]
    emitted = units(events)
    assert emitted[0] == AccessUnit(GOP * FRAME_TICKS, True, annexb(parameter_sets + stream[GOP]))
    assert [unit.data for unit in emitted[1:]] == [annexb(nals) for nals in stream[GOP + 1:]]
    assert decoded_frames(b"".join(unit.data for unit in emitted), "h264") == FRAMES - GOP


def test_loss_drops_until_next_idr_then_recovers(camera_stream: list[list[bytes]]) -> None:
    parameter_sets = [nal for nal in camera_stream[0] if nal[0] & 0x1F in (7, 8)]
    stream = without_parameter_sets(camera_stream)
    packets = H264Packetizer(300).packetize_all(stream)
    in_frame_13 = [index for index, packet in enumerate(packets) if packet.ts == 13 * FRAME_TICKS]
    lost = in_frame_13[len(in_frame_13) // 2]
    events = feed_all(H264Depacketizer(parameter_sets), packets[:lost] + packets[lost + 1:])

    seq = packets[lost].seq
    assert [event for event in events if isinstance(event, PacketLoss)] == [PacketLoss(seq, seq + 1, 1)]
    assert drops(events) == [(index * FRAME_TICKS, "loss") for index in range(13, 20)]
    emitted = units(events)
    assert [unit.ts // FRAME_TICKS for unit in emitted] == [*range(13), *range(20, FRAMES)]
    # The IDR that ends the loss gets the parameter sets again; later IDRs do not.
    assert emitted[13].data == annexb(parameter_sets + stream[20])
    assert emitted[23].data == annexb(stream[30])
    assert decoded_frames(b"".join(unit.data for unit in emitted), "h264") == len(emitted)


def test_loss_of_idr_head_waits_for_the_following_idr(camera_stream: list[list[bytes]]) -> None:
    packets = H264Packetizer(300).packetize_all(camera_stream)
    idr_head = next(index for index, packet in enumerate(packets) if packet.ts == GOP * FRAME_TICKS)
    events = feed_all(H264Depacketizer(), packets[:idr_head] + packets[idr_head + 1:])
    assert drops(events) == [(index * FRAME_TICKS, "loss") for index in range(GOP, 2 * GOP)]
    assert [unit.ts // FRAME_TICKS for unit in units(events)] == [*range(GOP), *range(2 * GOP, FRAMES)]


def test_whole_access_units_lost(camera_stream: list[list[bytes]]) -> None:
    packets = H264Packetizer(1200).packetize_all(camera_stream)
    kept = [packet for packet in packets if not 4 * FRAME_TICKS <= packet.ts <= 6 * FRAME_TICKS]
    events = feed_all(H264Depacketizer(), kept)
    [loss] = [event for event in events if isinstance(event, PacketLoss)]
    assert loss.lost == len(packets) - len(kept)
    assert drops(events) == [(index * FRAME_TICKS, "loss") for index in range(7, GOP)]


def test_late_packet_after_gap_is_ignored() -> None:
    depacketizer = H264Depacketizer()
    events = feed_all(depacketizer, [
        rtp(IDR, seq=10, marker=True),
        rtp(SLICE, seq=12, ts=3000, marker=True),
        rtp(SLICE, seq=11, ts=3000),  # arrives after its successor
        rtp(IDR, seq=13, ts=6000, marker=True),
    ])
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        PacketLoss(expected_seq=11, received_seq=12, lost=1),
        AccessUnitDropped(3000, "loss"),
        AccessUnit(6000, True, annexb([IDR])),
    ]
    assert depacketizer.late_packets == 1


def test_a_loss_after_an_unended_access_unit_drops_it_and_the_next() -> None:
    events = feed_all(H264Depacketizer(), [
        rtp(IDR, seq=1, marker=True),
        rtp(SLICE, seq=2, ts=3000),  # its marker may have been in the lost packet
        rtp(SLICE, seq=4, ts=6000, marker=True),
        rtp(IDR, seq=5, ts=9000, marker=True),
    ])
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        PacketLoss(expected_seq=3, received_seq=4, lost=1),
        AccessUnitDropped(3000, "loss"),
        AccessUnitDropped(6000, "loss"),
        AccessUnit(9000, True, annexb([IDR])),
    ]


def test_packets_up_to_3000_behind_are_late_and_further_ones_a_loss() -> None:
    depacketizer = H264Depacketizer()
    depacketizer.feed(rtp(IDR, seq=5000, marker=True))
    assert depacketizer.feed(rtp(SLICE, seq=5001 - 3000, ts=3000, marker=True)) == []  # 3000 behind the expected
    assert depacketizer.late_packets == 1
    events = depacketizer.feed(rtp(SLICE, seq=5001 - 3001, ts=6000, marker=True))
    assert events[0] == PacketLoss(expected_seq=5001, received_seq=2000, lost=0x10000 - 3001)


def test_an_access_unit_of_exactly_the_bound_is_kept() -> None:
    depacketizer = H264Depacketizer(max_access_unit_bytes=4 + len(IDR))
    assert feed_all(depacketizer, [rtp(IDR, seq=1, marker=True)]) == [AccessUnit(0, True, annexb([IDR]))]
    one_byte_less = H264Depacketizer(max_access_unit_bytes=3 + len(IDR))
    events = feed_all(one_byte_less, [rtp(IDR[:2], seq=1, marker=True), rtp(IDR, seq=2, ts=3000, marker=True)])
    assert events == [AccessUnit(0, True, annexb([IDR[:2]])), AccessUnitDropped(3000, "too_large")]
    with pytest.raises(ValueError, match=r"^parameter_sets must not contain empty NAL units$"):
        H264Depacketizer(parameter_sets=[b""])


def test_the_edges_of_what_is_a_nal_unit_and_a_fragment() -> None:
    events = feed_all(H264Depacketizer(), [
        rtp(IDR, seq=1, marker=True),
        rtp("17 01", seq=2, ts=3000, marker=True),  # type 23, the last NAL unit type
        rtp("7c 81 aa", seq=3, ts=6000),
        rtp("7c 41", seq=4, ts=6000, marker=True),  # an end fragment with no bytes
    ])
    assert units(events) == [AccessUnit(0, True, annexb([IDR])), AccessUnit(3000, False, annexb([b"\x17\x01"])),
                             AccessUnit(6000, False, annexb([b"\x61\xaa"]))]  # fmt: skip
    fragmented_idr = [rtp("7c 85 aa", seq=1), rtp("7c 45", seq=2, marker=True)]  # 4 + 2 Annex-B bytes
    assert units(feed_all(H264Depacketizer(max_access_unit_bytes=6), fragmented_idr)) == [AccessUnit(0, True, annexb([b"\x65\xaa"]))]
    assert units(feed_all(H264Depacketizer(max_access_unit_bytes=5), fragmented_idr)) == []


def test_the_default_bound_is_8_mb() -> None:
    idr = b"\x65" + bytes(8_000_000 - 5)
    kept = feed_all(H264Depacketizer(), [rtp(idr, seq=1, marker=True)])
    assert units(kept) == [AccessUnit(0, True, annexb([idr]))]
    dropped = feed_all(H264Depacketizer(), [rtp(IDR[:2], seq=1, marker=True), rtp(idr + b"\x00", seq=2, ts=3000, marker=True)])
    assert drops(dropped) == [(3000, "too_large")]


def test_loss_count_is_modulo_2_16() -> None:
    events = feed_all(H264Depacketizer(), [rtp(IDR, seq=0xFFFE, marker=True), rtp(IDR, seq=3, ts=3000, marker=True)])
    assert events[1] == PacketLoss(expected_seq=0xFFFF, received_seq=3, lost=4)


def test_new_ssrc_restarts_the_stream() -> None:
    events = feed_all(H264Depacketizer(), [
        rtp(IDR, seq=100, marker=True),
        rtp(SLICE, seq=101, ts=3000),  # marker never comes: the old stream ends here
        rtp(SLICE, seq=5000, ts=77, marker=True, ssrc=2),
        rtp(IDR, seq=5001, ts=3077, marker=True, ssrc=2),
    ])
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        AccessUnit(3000, False, annexb([SLICE])),
        AccessUnitDropped(77, "waiting_for_idr"),
        AccessUnit(3077, True, annexb([IDR])),
    ]


# --- malformed and unsupported payloads -------------------------------------------------------

MALFORMED = {
    "empty payload": [""],
    "STAP-B": ["79 0000 0004 419a0203"],
    "MTAP16": ["7a 0000 0004 00 0000 419a0203"],
    "MTAP24": ["7b 0000 0004 00 000000 419a0203"],
    "FU-B": ["7d 81 0000 aa"],
    "FU-A without header": ["7c"],
    "FU-A continuation without start": ["7c 01 aa", "7c 41 bb"],
    "FU-A start while one is open": ["7c 81 aa", "7c 81 bb", "7c 41 cc"],
    "FU-A type changes": ["7c 81 aa", "7c 45 bb"],
    "FU-A of a STAP-A": ["7c 98 aa", "7c 58 bb"],
    "FU-A interrupted by a NAL unit": ["7c 81 aa", "419a0203", "7c 41 bb"],
    "FU-A interrupted by the last NAL unit": ["7c 81 aa", "419a0203"],
    "FU-A started again at the end": ["7c 81 aa", "7c 81 bb"],
    "FU-A open at marker": ["7c 81 aa", "7c 01 bb"],
    "STAP-A empty": ["78"],
    "STAP-A truncated size": ["78 0004 419a0203 00"],
    "STAP-A size overruns": ["78 0009 419a0203"],
    "STAP-A zero size": ["78 0000 0004 419a0203"],
    "STAP-A nests a STAP-A": ["78 0003 780000"],
}


@pytest.mark.parametrize("payloads", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_access_unit_is_dropped_until_next_idr(payloads: list[str]) -> None:
    packets = [rtp(IDR, seq=1, marker=True)]
    last = len(payloads) - 1
    packets += [rtp(payload, seq=2 + index, ts=3000, marker=index == last) for index, payload in enumerate(payloads)]
    seq = packets[-1].seq
    packets += [rtp(SLICE, seq=seq + 1, ts=6000, marker=True), rtp(IDR, seq=seq + 2, ts=9000, marker=True)]
    events = feed_all(H264Depacketizer(), packets)
    assert events == [
        AccessUnit(0, True, annexb([IDR])),
        AccessUnitDropped(3000, "malformed"),
        AccessUnitDropped(6000, "loss"),
        AccessUnit(9000, True, annexb([IDR])),
    ]


def test_open_fragment_at_timestamp_change_is_malformed() -> None:
    events = feed_all(H264Depacketizer(), [
        rtp(IDR, seq=1, marker=True), rtp("7c 81 aa", seq=2, ts=3000), rtp(IDR, seq=3, ts=6000, marker=True),
    ])
    assert drops(events) == [(3000, "malformed")]


def test_open_fragment_at_end_of_stream_is_loss() -> None:
    depacketizer = H264Depacketizer()
    feed_all(depacketizer, [rtp(IDR, seq=1, marker=True), rtp("7c 81 aa", seq=2, ts=3000)], flush=False)
    assert depacketizer.flush() == [AccessUnitDropped(3000, "loss")]
    assert depacketizer.buffered_bytes == 0


@pytest.mark.parametrize("reserved", ["00 aa", "1e aa", "1f aa"])
def test_reserved_packet_types_are_ignored(reserved: str) -> None:
    packets = [rtp(IDR, seq=1), rtp(reserved, seq=2), rtp(reserved, seq=3, ts=3000, marker=True)]
    events = feed_all(H264Depacketizer(), packets)
    assert events == [AccessUnit(0, True, annexb([IDR]))]


def test_too_large_access_unit_is_dropped_and_released() -> None:
    depacketizer = H264Depacketizer(max_access_unit_bytes=100)
    big_slice = b"\x41" + bytes(range(1, 120))
    events = depacketizer.feed(rtp(IDR, seq=1, marker=True))
    events += depacketizer.feed(rtp(b"\x7c\x81" + big_slice[1:60], seq=2, ts=3000))
    assert 0 < depacketizer.buffered_bytes <= 100
    events += depacketizer.feed(rtp(b"\x7c\x01" + big_slice[60:], seq=3, ts=3000))
    assert depacketizer.buffered_bytes == 0
    events += depacketizer.feed(rtp(b"\x7c\x41\x01", seq=4, ts=3000, marker=True))
    events += feed_all(depacketizer, [rtp(IDR, seq=5, ts=6000, marker=True)])
    assert events == [
        AccessUnit(0, True, annexb([IDR])), AccessUnitDropped(3000, "too_large"), AccessUnit(6000, True, annexb([IDR])),
    ]


# --- property tests ---------------------------------------------------------------------------

nal_units = st.builds(
    lambda header, body: bytes([header]) + body,
    st.sampled_from([0x01, 0x21, 0x41, 0x61, 0x65, 0x06, 0x67, 0x68, 0x09]),  # slices, SEI, SPS, PPS, AUD
    st.binary(min_size=0, max_size=400),
)
access_unit_lists = st.lists(st.lists(nal_units, min_size=1, max_size=6), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(access_unit_lists, st.integers(3, 300), st.booleans())
def test_any_access_units_survive_any_mtu(
    access_units: list[list[bytes]], max_payload_bytes: int, aggregate: bool
) -> None:
    access_units[0].append(IDR)  # decoding starts at an IDR
    packets = H264Packetizer(max_payload_bytes, aggregate=aggregate).packetize_all(access_units)
    events = feed_all(H264Depacketizer(), packets)
    assert [unit.data for unit in events] == [annexb(nals) for nals in access_units]


packet_types = st.sampled_from([0, 1, 5, 7, 8, 9, 24, 25, 26, 27, 28, 29, 30, 31])
hostile_payloads = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda kind, rest: bytes([kind | 0x60]) + rest, packet_types, st.binary(max_size=40)),
    st.builds(lambda fu_header, rest: bytes([0x7C, fu_header]) + rest, st.integers(0, 255), st.binary(max_size=60)),
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
@given(st.lists(hostile_packets, max_size=40), st.integers(1, 120))
def test_hostile_packets_never_raise_and_stay_bounded(packets: list[RtpPacket], max_access_unit_bytes: int) -> None:
    depacketizer = H264Depacketizer([SPS, PPS], max_access_unit_bytes=max_access_unit_bytes)
    for packet in packets:
        for event in depacketizer.feed(packet):
            assert isinstance(event, AccessUnit | PacketLoss | AccessUnitDropped)
            if isinstance(event, AccessUnit):
                assert event.data.startswith(b"\x00\x00\x00\x01")
        assert depacketizer.buffered_bytes <= max_access_unit_bytes
    depacketizer.flush()
    assert depacketizer.buffered_bytes == 0
