"""H.265 RTP depacketizer (RFC 7798, single-stream transmission) producing Annex-B access units.

Sans-IO: feed it parsed ``RtpPacket`` objects in arrival order and act on the events it
returns. It never raises on peer data; every defect becomes an event. The access-unit state
machine (loss, resynchronisation at the next IRAP, bounds) is shared with H.264 in
``dalistream.rtp.depacketizer``.

Payload structures (RFC 7798 section 4.4), after the 2-byte payload header that has the layout
of an H.265 NAL unit header (F, Type, LayerId, TID)::

    single NAL unit  PayloadHdr [DONL] payload
    AP (type 48)     PayloadHdr [DONL] size NALU  { [DOND] size NALU } ...
    FU (type 49)     PayloadHdr FU-header(S, E, FuType) [DONL, first fragment only] fragment
    PACI (type 50)   ignored and counted

DONL (16 bits) and DOND (8 bits) are present only when the SDP's ``sprop-max-don-diff`` is
greater than 0; they are parsed and stripped. Units are delivered in transmission order, which
is decoding order for a single sender: no de-interleaving buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from dalistream.rtp.depacketizer import START_CODE, Depacketizer

__all__ = ["AP", "FU", "PACI", "H265Depacketizer"]

NAL_HEADER_BYTES: Final = 2
DONL_BYTES: Final = 2
DOND_BYTES: Final = 1
AP_SIZE_BYTES: Final = 2
FU_HEADER_BYTES: Final = 1

# nal_unit_type values (H.265 Table 7-1) that the depacketizer looks at.
IRAP_TYPES: Final = frozenset(range(16, 22))  # BLA_W_LP .. CRA_NUT: decoding can start here
NAL_VPS: Final = 32
NAL_SPS: Final = 33
NAL_PPS: Final = 34
NAL_AUD: Final = 35
MAX_NAL_TYPE: Final = 47  # 48..63 are unspecified in H.265; RFC 7798 uses 48..50

# RTP payload structures carried in the payload header's type field (RFC 7798 4.4).
AP: Final = 48
FU: Final = 49
PACI: Final = 50


def type_field(header: int) -> int:
    """The 6-bit type of the first byte of a NAL unit header or payload header."""
    return header >> 1 & 0x3F


class H265Depacketizer(Depacketizer):
    """Reassembles H.265 access units from single NAL unit, AP and FU packets.

    An access unit ends at a packet with the marker bit, or (marker missing) when a packet
    with a new RTP timestamp arrives. After a sequence gap, the access unit in progress and
    every following one are dropped until the next IRAP access unit (nal_unit_type 16..21);
    the same holds before the first IRAP. PACI packets and payload types 51..63 are ignored
    (counted in ``ignored_packets``); anything that does not parse is reported as malformed.

    ``parameter_sets`` are raw VPS/SPS/PPS NAL units, e.g. from the SDP's ``sprop-vps``,
    ``sprop-sps`` and ``sprop-pps``.
    """

    KEY_TYPES = IRAP_TYPES
    PARAMETER_SET_TYPES = frozenset({NAL_VPS, NAL_SPS, NAL_PPS})
    AUD_TYPE = NAL_AUD

    def __init__(self, parameter_sets: Sequence[bytes] = (), max_access_unit_bytes: int = 8_000_000,
                 *, donl: bool = False) -> None:
        """
        :param parameter_sets: raw VPS/SPS/PPS NAL units (no start code), in that order.
        :param max_access_unit_bytes: bound on the Annex-B bytes held for the access unit
            being assembled; a larger one is dropped as ``"too_large"``.
        :param donl: payloads carry DONL/DOND fields (the SDP's ``sprop-max-don-diff`` > 0).
        """
        super().__init__(parameter_sets, max_access_unit_bytes)
        self._donl = donl
        self._ignored_packets = 0

    @property
    def ignored_packets(self) -> int:
        """PACI and unspecified (51..63) packets skipped so far."""
        return self._ignored_packets

    @staticmethod
    def _nal_type(nal: bytes) -> int:
        return type_field(nal[0])

    def _depacketize(self, payload: bytes) -> None:
        if len(payload) < NAL_HEADER_BYTES:
            self._fail("malformed")
            return
        packet_type = type_field(payload[0])
        if packet_type == FU:
            self._fragment(payload)
        elif packet_type > FU:
            self._ignored_packets += 1  # PACI (50) and unspecified types: receivers skip them
        elif self._fu is not None:
            self._fail("malformed")  # a fragmented NAL unit was interrupted
        elif packet_type == AP:
            self._aggregate(payload)
        else:
            self._single(payload)

    def _single(self, payload: bytes) -> None:
        """Single NAL unit packet (RFC 7798 4.4.1): the NAL unit, with DONL after its header."""
        if self._donl:
            if len(payload) < NAL_HEADER_BYTES + DONL_BYTES:
                self._fail("malformed")
                return
            payload = payload[:NAL_HEADER_BYTES] + payload[NAL_HEADER_BYTES + DONL_BYTES:]
        self._append([payload])

    def _aggregate(self, payload: bytes) -> None:
        """AP (RFC 7798 4.4.2): aggregation units of [DONL or DOND] 16-bit size + NAL unit."""
        nals = []
        pos = NAL_HEADER_BYTES
        while pos < len(payload):
            if self._donl:
                pos += DONL_BYTES if not nals else DOND_BYTES
            size = int.from_bytes(payload[pos:pos + AP_SIZE_BYTES])
            nal = payload[pos + AP_SIZE_BYTES:pos + AP_SIZE_BYTES + size]
            if size < NAL_HEADER_BYTES or len(nal) < size or type_field(nal[0]) > MAX_NAL_TYPE:  # cut short too
                self._fail("malformed")
                return
            nals.append(nal)
            pos += AP_SIZE_BYTES + size
        if not nals:
            self._fail("malformed")
        else:
            self._append(nals)

    def _fragment(self, payload: bytes) -> None:
        """FU (RFC 7798 4.4.3): payload header, FU header (S, E, FuType), [DONL], fragment."""
        if len(payload) < NAL_HEADER_BYTES + FU_HEADER_BYTES:
            self._fail("malformed")
            return
        fu_header = payload[NAL_HEADER_BYTES]
        start, end, nal_type = fu_header & 0x80, fu_header & 0x40, fu_header & 0x3F
        fragment_at = NAL_HEADER_BYTES + FU_HEADER_BYTES
        if nal_type > MAX_NAL_TYPE:
            self._fail("malformed")  # aggregation or fragmentation packets are never fragmented
            return
        if start:
            if self._fu is not None:
                self._fail("malformed")  # a new start while a fragmented NAL unit is open
                return
            if self._donl:
                fragment_at += DONL_BYTES
                if len(payload) < fragment_at:
                    self._fail("malformed")
                    return
            if not self._reserve(len(START_CODE) + NAL_HEADER_BYTES):
                return
            # The fragmented NAL unit's header: F, LayerId and TID from the payload header, type from FuType.
            self._fu = bytearray([payload[0] & 0x81 | nal_type << 1, payload[1]])
        elif self._fu is None or type_field(self._fu[0]) != nal_type:
            self._fail("malformed")
            return
        self._add_fragment(payload[fragment_at:], end)
