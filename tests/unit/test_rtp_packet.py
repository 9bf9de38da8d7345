"""RtpPacket: RFC 3550 header parsing, round trip, a clear RtpError for each defect; timestamp unwrapping."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dalistream.rtp.packet import RtpError, RtpPacket
from dalistream.rtp.timestamps import TimestampUnwrapper

# V=2, M=1, PT=96, seq=0x1234, ts=0xDEADBEEF, ssrc=0x01020304, payload "abc"
PLAIN = bytes.fromhex("80e01234deadbeef01020304") + b"abc"
# V=2, CC=2, PT=0, two CSRCs
WITH_CSRC = bytes.fromhex("82000001 00000002 00000003 11111111 22222222") + b"\x09\xf0"
# V=2, X=1, one-word extension with profile 0xBEDE (RFC 8285 one-byte form)
WITH_EXTENSION = bytes.fromhex("90600001 00000002 00000003 bede0001 10ff0000") + b"pay"
# V=2, P=1, 3 bytes of padding (count included)
WITH_PADDING = bytes.fromhex("a0600001 00000002 00000003") + b"pay" + b"\x00\x00\x03"


def test_parse_fixed_header() -> None:
    packet = RtpPacket.parse(PLAIN)
    assert packet == RtpPacket(pt=96, marker=True, seq=0x1234, ts=0xDEADBEEF, ssrc=0x01020304, payload=b"abc")


def test_parse_csrc_extension_padding() -> None:
    assert RtpPacket.parse(WITH_CSRC).csrc == (0x11111111, 0x22222222)
    assert RtpPacket.parse(WITH_CSRC).payload == b"\x09\xf0"
    extended = RtpPacket.parse(WITH_EXTENSION)
    assert extended.extension == (0xBEDE, bytes.fromhex("10ff0000"))
    assert extended.payload == b"pay"
    padded = RtpPacket.parse(WITH_PADDING)
    assert (padded.payload, padded.padding) == (b"pay", 3)


@pytest.mark.parametrize("wire", [PLAIN, WITH_CSRC, WITH_EXTENSION, WITH_PADDING], ids=["plain", "csrc", "ext", "pad"])
def test_round_trip_vectors(wire: bytes) -> None:
    assert bytes(RtpPacket.parse(wire)) == wire


def test_padding_only_packet_has_empty_payload() -> None:
    wire = b"\xa0" + PLAIN[1:12] + b"\x00\x00\x00\x04"
    assert RtpPacket.parse(wire).payload == b""
    assert bytes(RtpPacket.parse(wire)) == wire


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"", "shorter than the 12-byte fixed header"),
        (PLAIN[:11], "shorter than the 12-byte fixed header"),
        (b"\x40" + PLAIN[1:], "version is 1"),
        (b"\x00" + PLAIN[1:], "version is 0"),
        (b"\x8f" + PLAIN[1:], "CSRC list (15 entries) overruns"),
        (WITH_CSRC[:19], "CSRC list (2 entries) overruns"),
        (b"\x90" + PLAIN[1:12] + b"\xbe\xde", "header extension starts at byte 12"),
        (b"\x90" + PLAIN[1:12] + b"\xbe\xde\x00\x02" + b"1234", "header extension of 2 words overruns"),
        (b"\xa0" + PLAIN[1:12] + b"ab\x00", "RTP padding bit is set but the padding count is 0"),
        (b"\xa0" + PLAIN[1:12] + b"ab\x04", "padding count 4 exceeds the 3 bytes"),
        (b"\xb0" + WITH_EXTENSION[1:-1] + b"\x09", "padding count 9 exceeds the 3 bytes"),
    ],
)
def test_malformed_raises_clear_rtp_error(wire: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=re.escape(message)):
        RtpPacket.parse(wire)


def test_rtp_error_messages_are_whole_sentences() -> None:
    with pytest.raises(RtpError, match=r"^RTP padding bit is set but the padding count is 0$"):
        RtpPacket.parse(b"\xa0" + PLAIN[1:12] + b"ab\x00")


def test_rtp_error_is_value_error() -> None:
    assert issubclass(RtpError, ValueError)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pt": 128}, "RTP pt must fit in 7 bits, got 128"),
        ({"pt": -1}, "RTP pt must fit in 7 bits, got -1"),
        ({"seq": 1 << 16}, "RTP seq must fit in 16 bits, got 65536"),
        ({"ts": 1 << 32}, "RTP ts must fit in 32 bits, got 4294967296"),
        ({"ssrc": -1}, "RTP ssrc must fit in 32 bits, got -1"),
        ({"ssrc": 1 << 32}, "RTP ssrc must fit in 32 bits, got 4294967296"),
        ({"padding": 256}, "RTP padding must fit in 8 bits, got 256"),
        ({"csrc": tuple(range(16))}, "RTP allows at most 15 CSRCs, got 16"),
        ({"csrc": (1 << 32,)}, "RTP CSRCs must fit in 32 bits, got (4294967296,)"),
        ({"extension": (1 << 16, b"")}, "RTP extension profile must fit in 16 bits, got 65536"),
        ({"extension": (0, b"abc")}, "RTP extension data must be a multiple of 4 bytes and at most 262140, got 3"),
        ({"extension": (0, bytes(262144))}, "RTP extension data must be a multiple of 4 bytes and at most 262140, got 262144"),
    ],
)
def test_out_of_range_fields_are_local_errors(fields: dict, message: str) -> None:
    arguments = {"pt": 96, "marker": False, "seq": 0, "ts": 0, "ssrc": 0} | fields
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$") as raised:
        RtpPacket(**arguments)
    assert not isinstance(raised.value, RtpError)
    largest = RtpPacket(pt=127, marker=True, seq=0xFFFF, ts=(1 << 32) - 1, ssrc=(1 << 32) - 1, padding=255,
                        extension=(0xFFFF, bytes(262140)))  # fmt: skip
    assert RtpPacket.parse(bytes(largest)) == largest


packets = st.builds(
    RtpPacket,
    pt=st.integers(0, 127),
    marker=st.booleans(),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFF_FFFF),
    ssrc=st.integers(0, 0xFFFF_FFFF),
    csrc=st.lists(st.integers(0, 0xFFFF_FFFF), max_size=15).map(tuple),
    extension=st.none() | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])),
    payload=st.binary(max_size=64),
    padding=st.integers(0, 255),
)


@given(packets)
def test_packet_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@given(packets)
def test_wire_round_trip(packet: RtpPacket) -> None:
    wire = bytes(packet)
    assert bytes(RtpPacket.parse(wire)) == wire


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert len(bytes(packet)) == len(data)


@given(packets, st.data())
def test_every_truncation_parses_or_raises_rtp_error(packet: RtpPacket, data: st.DataObject) -> None:
    wire = bytes(packet)
    cut = data.draw(st.integers(0, len(wire)))
    try:
        RtpPacket.parse(wire[:cut])
    except RtpError:
        pass


# --- RTP timestamps ---------------------------------------------------------------------------


def test_timestamps_are_seconds_since_the_first() -> None:
    unwrapper = TimestampUnwrapper(90_000)
    assert unwrapper.seconds(1_000_000) == 0.0
    assert unwrapper.seconds(1_090_000) == 1.0
    assert unwrapper.seconds(1_087_000) == pytest.approx(1.0 - 3000 / 90_000)  # small step back stays small


def test_timestamps_wrap_both_ways() -> None:
    unwrapper = TimestampUnwrapper(90_000)
    assert unwrapper.seconds(0xFFFF_FFFF - 2999) == 0.0
    assert unwrapper.seconds(3000) == pytest.approx(6000 / 90_000)  # forwards across 2**32
    assert unwrapper.seconds(0xFFFF_FFFF - 5999) == pytest.approx(-3000 / 90_000)  # and back again


@given(st.integers(0, 0xFFFF_FFFF), st.lists(st.integers(-(1 << 30), 1 << 30), max_size=50))
def test_timestamps_unwrap_any_walk(first: int, steps: list[int]) -> None:
    unwrapper = TimestampUnwrapper(1000)
    unwrapper.seconds(first)
    elapsed = 0
    for step in steps:
        elapsed += step
        assert unwrapper.seconds((first + elapsed) % (1 << 32)) == elapsed / 1000


@pytest.mark.parametrize(
    ("clock_rate", "ts", "message"),
    [
        (0, 0, "clock_rate must be positive, got 0"),
        (90_000, -1, "RTP timestamp must fit in 32 bits, got -1"),
        (90_000, 1 << 32, "RTP timestamp must fit in 32 bits, got 4294967296"),
    ],
)
def test_timestamp_arguments_are_checked(clock_rate: int, ts: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        TimestampUnwrapper(clock_rate).seconds(ts)
    assert TimestampUnwrapper(1).seconds(5) == 0.0  # any positive clock rate, even 1 Hz
