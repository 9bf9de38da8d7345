"""What every video depacketizer shares: its events and the access-unit state machine.

A codec's depacketizer (``h264``, ``h265``) only unpacks payloads into NAL units; this module
tracks sequence numbers, SSRC changes, access-unit boundaries (marker bit or timestamp change),
loss and resynchronisation at the next random access point, the memory bound, and the
out-of-band parameter sets. Sans-IO: feed parsed ``RtpPacket`` objects in arrival order and act
on the returned events; peer data never makes it raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal, TypeAlias

from dalistream.rtp.packet import RtpPacket

START_CODE: Final = b"\x00\x00\x00\x01"

MAX_MISORDER: Final = 3000
"""A packet at most this many sequence numbers behind the expected one is a duplicate or late, not a jump."""

DropReason: TypeAlias = Literal["loss", "waiting_for_idr", "malformed", "too_large"]


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One complete coded picture with its parameter sets and SEI, as Annex-B."""

    ts: int
    """RTP timestamp (32-bit, as on the wire)."""
    key: bool
    """Decoding can start here: an H.264 IDR slice (nal_unit_type 5) or an H.265 IRAP picture (16..21)."""
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
    until the next key access unit), ``"waiting_for_idr"`` (no key access unit — H.264 IDR,
    H.265 IRAP — seen yet since the start), ``"malformed"`` (bad NAL unit, bad fragment
    sequence or unsupported packet type) or ``"too_large"`` (it outgrew ``max_access_unit_bytes``).
    """

    ts: int
    reason: DropReason


DepacketizerEvent: TypeAlias = AccessUnit | PacketLoss | AccessUnitDropped


class Depacketizer(ABC):
    """Reassembles access units from one codec's RTP payloads.

    An access unit ends at a packet with the marker bit, or (marker missing) when a packet
    with a new RTP timestamp arrives. After a sequence gap, the access unit in progress and
    every following one are dropped until the next key access unit; the same holds before
    the first one. Packets are taken in arrival order: one that arrives after its successor
    counts as lost, then as late; put a jitter buffer in front where the network reorders.

    Subclasses implement ``_depacketize`` (appending NAL units with ``_append`` and building
    fragmented ones in ``_fu``) and ``_nal_type``, and name their key, parameter-set and
    access unit delimiter NAL unit types.
    """

    KEY_TYPES: ClassVar[frozenset[int]]
    """NAL unit types that make an access unit a random access point."""
    PARAMETER_SET_TYPES: ClassVar[frozenset[int]]
    """NAL unit types that, all present, make the out-of-band parameter sets unnecessary."""
    AUD_TYPE: ClassVar[int]
    """The access unit delimiter's NAL unit type; out-of-band parameter sets go after it."""

    def __init__(self, parameter_sets: Sequence[bytes] = (), max_access_unit_bytes: int = 8_000_000) -> None:
        """
        :param parameter_sets: raw parameter-set NAL units (no start code), e.g. from the SDP;
            put in front of the first key access unit, and of the key access unit that ends
            a loss, when that access unit lacks its own.
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

    def feed(self, packet: RtpPacket) -> list[DepacketizerEvent]:
        """Take the next received packet; return the events it completes, in order."""
        events: list[DepacketizerEvent] = []
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            # The sender restarted: end the old stream and wait for a key access unit of the new one.
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

    def flush(self) -> list[DepacketizerEvent]:
        """End of stream: emit the pending access unit, or its drop if it is incomplete."""
        events: list[DepacketizerEvent] = []
        if self._au_ts is not None:
            self._finish(events, unfinished="loss")
        return events

    @abstractmethod
    def _depacketize(self, payload: bytes) -> None:
        """Unpack one RTP payload of the pending access unit, or ``_fail`` it."""

    @staticmethod
    @abstractmethod
    def _nal_type(nal: bytes) -> int:
        """nal_unit_type of a NAL unit (at least its header)."""

    def _reset_stream(self) -> None:
        self._ssrc: int | None = None
        self._expected_seq: int | None = None
        # Why access units are dropped until the next key access unit, or None once decoding can go on.
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

    def _add_fragment(self, fragment: bytes, end: bool) -> None:
        """Append a fragmentation unit's payload to the open NAL unit; the end bit completes it."""
        if not self._reserve(len(fragment)):
            return
        self._fu += fragment
        if end:
            # S and E both set violates RFC 6184 5.8 / RFC 7798 4.4.3 but is harmless: accept the NAL unit.
            self._nals.append(bytes(self._fu))
            self._fu = None

    def _reserve(self, size: int) -> bool:
        """Account for ``size`` more Annex-B bytes, or drop the access unit as ``"too_large"``."""
        if self._buffered_bytes + size > self._max_access_unit_bytes:
            self._fail("too_large")
            return False
        self._buffered_bytes += size
        return True

    def _append(self, nals: Sequence[bytes]) -> None:
        """Add whole NAL units to the pending access unit, within the memory bound."""
        if self._reserve(sum(len(START_CODE) + len(nal) for nal in nals)):
            self._nals += nals

    def _finish(self, events: list[DepacketizerEvent], unfinished: DropReason) -> None:
        """End the pending access unit; ``unfinished`` is the reason if a fragment is still open."""
        ts = self._au_ts
        assert ts is not None
        reason = self._defect
        if reason is None and self._fu is not None:
            reason = unfinished
        nals = self._nals
        self._reset_access_unit()
        if reason is None and not nals:
            return  # only ignored packet types: nothing to report

        types = {self._nal_type(nal) for nal in nals}
        key = not self.KEY_TYPES.isdisjoint(types)
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
        if not self._parameter_sets or self.PARAMETER_SET_TYPES <= types:
            return nals
        at = 1 if self._nal_type(nals[0]) == self.AUD_TYPE else 0
        return [*nals[:at], *self._parameter_sets, *nals[at:]]
