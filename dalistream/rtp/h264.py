"""H.264 RTP depacketizer (RFC 6184, non-interleaved mode) producing Annex-B access units.

Sans-IO: feed it parsed ``RtpPacket`` objects in arrival order and act on the events it
returns. It never raises on peer data; every defect becomes an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from dalistream.rtp.packet import RtpPacket

START_CODE: Final = b"\x00\x00\x00\x01"

# nal_unit_type values (H.264 Table 7-1) that the depacketizer looks at.
NAL_IDR: Final = 5
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9

# RTP payload types carried in the NAL header's type field (RFC 6184 Table 1).
STAP_A: Final = 24
STAP_B: Final = 25
MTAP16: Final = 26
MTAP24: Final = 27
FU_A: Final = 28
FU_B: Final = 29
RESERVED: Final = frozenset({0, 30, 31})  # RFC 6184 Table 3: receivers ignore these

MAX_MISORDER: Final = 3000
"""A packet at most this many sequence numbers behind the expected one is a duplicate or late, not a jump."""

DropReason: TypeAlias = Literal["loss", "waiting_for_idr", "malformed", "too_large"]


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One complete coded picture with its parameter sets and SEI, as Annex-B."""

    ts: int
    """RTP timestamp (32-bit, as on the wire)."""
    key: bool
    """Contains an IDR slice (nal_unit_type 5), so decoding can start here."""
    data: bytes
    """Annex-B: every NAL unit prefixed with ``00 00 00 01``."""


@dataclass(frozen=True, slots=True)
class PacketLoss:
    """A gap in the RTP sequence numbers."""

    expected_seq: int
    received_seq: int
    lost: int
    """Packets missing, ``(received_seq - expected_seq) mod 2**16``."""


@dataclass(frozen=True, slots=True)
class AccessUnitDropped:
    """An access unit that was not emitted, and why.

    ``reason`` is ``"loss"`` (packets of it were lost, or the decoding chain is broken
    until the next IDR), ``"waiting_for_idr"`` (no IDR seen yet since the start),
    ``"malformed"`` (bad NAL unit, bad FU sequence or unsupported packet type) or
    ``"too_large"`` (it outgrew ``max_access_unit_bytes``).
    """

    ts: int
    reason: DropReason


H264Event: TypeAlias = AccessUnit | PacketLoss | AccessUnitDropped


def _nal_type(header: int) -> int:
    return header & 0x1F


def _is_nal_unit(nal_type: int) -> bool:
    """Types 1..23 are H.264 NAL units; the rest are RTP packet structures or reserved."""
    return 1 <= nal_type <= 23


class H264Depacketizer:
    """Reassembles access units from single NAL unit, STAP-A and FU-A packets.

    An access unit ends at a packet with the marker bit, or (marker missing) when a packet
    with a new RTP timestamp arrives. After a sequence gap, the access unit in progress and
    every following one are dropped until the next IDR access unit; the same holds before
    the first IDR. STAP-B, MTAP and FU-B (interleaved mode) are reported as malformed.
    Packets are taken in arrival order: one that arrives after its successor counts as
    lost, then as late; put a jitter buffer in front where the network reorders.
    """

    def __init__(self, parameter_sets: Sequence[bytes] = (), max_access_unit_bytes: int = 8_000_000) -> None:
        """
        :param parameter_sets: raw SPS/PPS NAL units (no start code), e.g. from the SDP's
            ``sprop-parameter-sets``; put in front of the first IDR access unit, and of the
            IDR that ends a loss, when that access unit lacks its own SPS and PPS.
        :param max_access_unit_bytes: bound on the Annex-B bytes held for the access unit
            being assembled; a larger one is dropped as ``"too_large"``.
        """
        if max_access_unit_bytes <= 0:
            raise ValueError(f"max_access_unit_bytes must be positive, got {max_access_unit_bytes}")
        if not all(parameter_sets):
            raise ValueError("parameter_sets must not contain empty NAL units")
        self._parameter_sets = tuple(bytes(nal) for nal in parameter_sets)
        self._max_access_unit_bytes = max_access_unit_bytes
        self._late_packets = 0
        self._reset_stream()

    @property
    def buffered_bytes(self) -> int:
        """Annex-B bytes held for the access unit being assembled (at most ``max_access_unit_bytes``)."""
        return self._buffered_bytes

    @property
    def late_packets(self) -> int:
        """Duplicate or reordered packets ignored so far."""
        return self._late_packets

    def feed(self, packet: RtpPacket) -> list[H264Event]:
        """Take the next received packet; return the events it completes, in order."""
        events: list[H264Event] = []
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            # The sender restarted: end the old stream and wait for an IDR of the new one.
            events += self.flush()
            self._reset_stream()
        self._ssrc = packet.ssrc

        lost = 0
        if self._expected_seq is not None:
            lost = (packet.seq - self._expected_seq) & 0xFFFF
            if lost >= 0x10000 - MAX_MISORDER:
                self._late_packets += 1
                return events
            if lost:
                events.append(PacketLoss(self._expected_seq, packet.seq, lost))
        self._expected_seq = (packet.seq + 1) & 0xFFFF

        if self._au_ts is not None and packet.ts != self._au_ts:
            if lost:
                self._fail("loss")  # the missing packets may have been the tail of the pending access unit
            self._finish(events, unfinished="malformed")
        if self._au_ts is None:
            self._au_ts = packet.ts
        if lost:
            self._fail("loss")  # ... or part of the one this packet belongs to
        if self._defect is None:
            self._depacketize(packet.payload)
        if packet.marker:
            self._finish(events, unfinished="malformed")
        return events

    def flush(self) -> list[H264Event]:
        """End of stream: emit the pending access unit, or its drop if it is incomplete."""
        events: list[H264Event] = []
        if self._au_ts is not None:
            self._finish(events, unfinished="loss")
        return events

    def _reset_stream(self) -> None:
        self._ssrc: int | None = None
        self._expected_seq: int | None = None
        # Why access units are dropped until the next IDR, or None once decoding can go on.
        self._resync: DropReason | None = "waiting_for_idr"
        self._reset_access_unit()

    def _reset_access_unit(self) -> None:
        self._au_ts: int | None = None
        self._nals: list[bytes] = []
        self._fu: bytearray | None = None  # the fragmented NAL unit being reassembled
        self._buffered_bytes = 0
        self._defect: DropReason | None = None

    def _fail(self, reason: DropReason) -> None:
        """Mark the pending access unit as dropped (first reason wins) and release its memory."""
        if self._defect is None:
            self._defect = reason
        self._nals = []
        self._fu = None
        self._buffered_bytes = 0

    def _reserve(self, size: int) -> bool:
        if self._buffered_bytes + size > self._max_access_unit_bytes:
            self._fail("too_large")
            return False
        self._buffered_bytes += size
        return True

    def _depacketize(self, payload: bytes) -> None:
        if not payload:
            self._fail("malformed")
            return
        packet_type = _nal_type(payload[0])
        if packet_type == FU_A:
            self._fragment(payload)
        elif self._fu is not None:
            self._fail("malformed")  # a fragmented NAL unit was interrupted
        elif _is_nal_unit(packet_type):
            if self._reserve(len(START_CODE) + len(payload)):
                self._nals.append(payload)
        elif packet_type == STAP_A:
            self._aggregate(payload)
        elif packet_type not in RESERVED:
            self._fail("malformed")  # STAP-B, MTAP16, MTAP24, FU-B: interleaved mode only

    def _aggregate(self, payload: bytes) -> None:
        """STAP-A (RFC 6184 5.7.1): a run of 16-bit size + NAL unit, at least one."""
        nals = []
        pos = 1
        while pos < len(payload):
            size = int.from_bytes(payload[pos:pos + 2])
            nal = payload[pos + 2:pos + 2 + size]
            if pos + 2 > len(payload) or size == 0 or len(nal) < size or not _is_nal_unit(_nal_type(nal[0])):
                self._fail("malformed")
                return
            nals.append(nal)
            pos += 2 + size
        if not nals:
            self._fail("malformed")
        elif self._reserve(sum(len(START_CODE) + len(nal) for nal in nals)):
            self._nals += nals

    def _fragment(self, payload: bytes) -> None:
        """FU-A (RFC 6184 5.8): FU indicator, FU header (S, E, R, type), fragment."""
        if len(payload) < 2:
            self._fail("malformed")
            return
        indicator, header = payload[0], payload[1]
        start, end, nal_type = header & 0x80, header & 0x40, _nal_type(header)
        if not _is_nal_unit(nal_type):
            self._fail("malformed")
            return
        if start:
            if self._fu is not None:
                self._fail("malformed")  # a new start while a fragmented NAL unit is open
                return
            if not self._reserve(len(START_CODE) + 1):
                return
            # The fragmented NAL unit's header: F and NRI from the indicator, type from the FU header.
            self._fu = bytearray([indicator & 0xE0 | nal_type])
        elif self._fu is None or _nal_type(self._fu[0]) != nal_type:
            self._fail("malformed")
            return
        fragment = payload[2:]
        if not self._reserve(len(fragment)):
            return
        self._fu += fragment
        if end:
            # S and E both set is a spec violation (RFC 6184 5.8) but harmless: accept the whole NAL unit.
            self._nals.append(bytes(self._fu))
            self._fu = None

    def _finish(self, events: list[H264Event], unfinished: DropReason) -> None:
        """End the pending access unit; ``unfinished`` is the reason if a fragment is still open."""
        ts = self._au_ts
        assert ts is not None
        reason = self._defect
        if reason is None and self._fu is not None:
            reason = unfinished
        nals = self._nals
        self._reset_access_unit()
        if reason is None and not nals:
            return  # only reserved packet types: nothing to report

        types = {_nal_type(nal[0]) for nal in nals}
        key = NAL_IDR in types
        if reason is None and not key and self._resync is not None:
            reason = self._resync
        elif reason is not None and self._resync == "waiting_for_idr":
            reason = "waiting_for_idr"
        if reason is not None:
            self._resync = self._resync or "loss"
            events.append(AccessUnitDropped(ts, reason))
            return

        if key and self._resync is not None:
            self._resync = None
            nals = self._with_parameter_sets(nals, types)
        events.append(AccessUnit(ts, key, b"".join(START_CODE + nal for nal in nals)))

    def _with_parameter_sets(self, nals: list[bytes], types: set[int]) -> list[bytes]:
        """Put the out-of-band parameter sets in front, after an access unit delimiter if any."""
        if not self._parameter_sets or {NAL_SPS, NAL_PPS} <= types:
            return nals
        at = 1 if _nal_type(nals[0][0]) == NAL_AUD else 0
        return [*nals[:at], *self._parameter_sets, *nals[at:]]
