"""H.264 RTP depacketizer (RFC 6184, non-interleaved mode) producing Annex-B access units.

Sans-IO: feed it parsed ``RtpPacket`` objects in arrival order and act on the events it
returns. It never raises on peer data; every defect becomes an event. The access-unit state
machine (loss, resynchronisation, bounds) is shared with H.265 in ``dalistream.rtp.depacketizer``.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from dalistream.rtp.depacketizer import (
    START_CODE,
    AccessUnit,
    AccessUnitDropped,
    DepacketizerEvent,
    Depacketizer,
    PacketLoss,
)

__all__ = ["FU_A", "STAP_A", "AccessUnit", "AccessUnitDropped", "H264Depacketizer", "H264Event", "PacketLoss"]

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

H264Event: TypeAlias = DepacketizerEvent


def type_field(header: int) -> int:
    """The 5-bit type field of a NAL unit header, FU indicator or FU header."""
    return header & 0x1F


def _is_nal_unit(nal_type: int) -> bool:
    """Types 1..23 are H.264 NAL units; the rest are RTP packet structures or reserved."""
    return 1 <= nal_type <= 23


class H264Depacketizer(Depacketizer):
    """Reassembles access units from single NAL unit, STAP-A and FU-A packets.

    An access unit ends at a packet with the marker bit, or (marker missing) when a packet
    with a new RTP timestamp arrives. After a sequence gap, the access unit in progress and
    every following one are dropped until the next IDR access unit; the same holds before
    the first IDR. STAP-B, MTAP and FU-B (interleaved mode) are reported as malformed.
    Packets are taken in arrival order: one that arrives after its successor counts as
    lost, then as late; put a jitter buffer in front where the network reorders.

    ``parameter_sets`` are raw SPS/PPS NAL units, e.g. from the SDP's ``sprop-parameter-sets``.
    """

    KEY_TYPES = frozenset({NAL_IDR})
    PARAMETER_SET_TYPES = frozenset({NAL_SPS, NAL_PPS})
    AUD_TYPE = NAL_AUD

    @staticmethod
    def _nal_type(nal: bytes) -> int:
        return type_field(nal[0])

    def _depacketize(self, payload: bytes) -> None:
        if not payload:
            self._fail("malformed")
            return
        packet_type = type_field(payload[0])
        if packet_type == FU_A:
            self._fragment(payload)
        elif self._fu is not None:
            self._fail("malformed")  # a fragmented NAL unit was interrupted
        elif _is_nal_unit(packet_type):
            self._append([payload])
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
            if size == 0 or len(nal) < size or not _is_nal_unit(type_field(nal[0])):  # size or unit cut short too
                self._fail("malformed")
                return
            nals.append(nal)
            pos += 2 + size
        if not nals:
            self._fail("malformed")
        else:
            self._append(nals)

    def _fragment(self, payload: bytes) -> None:
        """FU-A (RFC 6184 5.8): FU indicator, FU header (S, E, R, type), fragment."""
        if len(payload) < 2:
            self._fail("malformed")
            return
        indicator, header = payload[0], payload[1]
        start, end, nal_type = header & 0x80, header & 0x40, type_field(header)
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
        elif self._fu is None or type_field(self._fu[0]) != nal_type:
            self._fail("malformed")
            return
        self._add_fragment(payload[2:], end)
