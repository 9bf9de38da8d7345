"""Test-only H.265 RTP packetizer (RFC 7798, single-stream transmission).

The H.265 depacketizer's counterpart in round-trip tests: single NAL unit packets, APs for runs
of small NAL units and FUs for large ones, marker bit on the last packet of each access unit,
and optionally DONL/DOND fields (as when the SDP says ``sprop-max-don-diff`` > 0), numbering
NAL units in transmission order.
"""

from __future__ import annotations

from collections.abc import Sequence

from rtp_packetizer import Packetizer


AP = 48
FU = 49
PACI = 50
_PAYLOAD_HEADER_BYTES = 2
_FU_HEADER_BYTES = 1
_DONL_BYTES = 2
_DOND_BYTES = 1
_SIZE_BYTES = 2


def nal_type(nal: bytes) -> int:
    """nal_unit_type from the first byte of an H.265 NAL unit header."""
    return nal[0] >> 1 & 0x3F


class H265Packetizer(Packetizer):
    """RFC 7798: single NAL unit packets, aggregation packets and fragmentation units, optionally with DONL."""

    def __init__(self, max_payload_bytes: int = 1400, *, pt: int = 96, ssrc: int = 0x1234_5678,
                 first_seq: int = 0, aggregate: bool = True, donl: bool = False, first_don: int = 0) -> None:
        overhead = _PAYLOAD_HEADER_BYTES + _FU_HEADER_BYTES + (_DONL_BYTES if donl else 0)
        if max_payload_bytes <= overhead:
            raise ValueError(f"max_payload_bytes must exceed the {overhead}-byte FU overhead")
        super().__init__(max_payload_bytes, pt=pt, ssrc=ssrc, first_seq=first_seq, aggregate=aggregate)
        self.donl = donl
        self.don = first_don & 0xFFFF  # decoding order number of the next NAL unit

    def _next_donl(self) -> bytes:
        donl = self.don.to_bytes(2)
        self.don = (self.don + 1) & 0xFFFF
        return donl

    def _single_size(self, nal: bytes) -> int:
        return len(nal) + (_DONL_BYTES if self.donl else 0)

    def _single(self, nal: bytes) -> bytes:
        if not self.donl:
            return nal
        return nal[:_PAYLOAD_HEADER_BYTES] + self._next_donl() + nal[_PAYLOAD_HEADER_BYTES:]

    def _aggregate_size(self, nals: Sequence[bytes]) -> int:
        size = _PAYLOAD_HEADER_BYTES + sum(_SIZE_BYTES + len(nal) for nal in nals)
        if self.donl:
            size += _DONL_BYTES + _DOND_BYTES * (len(nals) - 1)
        return size

    def _aggregate(self, nals: Sequence[bytes]) -> bytes:
        # F is the OR of the units' F bits; LayerId and TID are their lowest (RFC 7798 4.4.2).
        forbidden = max(nal[0] & 0x80 for nal in nals)
        layer_id = min((nal[0] & 0x01) << 5 | nal[1] >> 3 for nal in nals)
        tid = min(nal[1] & 0x07 for nal in nals)
        header = bytes([forbidden | AP << 1 | layer_id >> 5, (layer_id & 0x1F) << 3 | tid])
        units = []
        for index, nal in enumerate(nals):
            if self.donl:
                # DOND is the DON difference minus one; consecutive units differ by one.
                units.append(self._next_donl() if index == 0 else self._skip_dond())
            units.append(len(nal).to_bytes(_SIZE_BYTES) + nal)
        return header + b"".join(units)

    def _skip_dond(self) -> bytes:
        self.don = (self.don + 1) & 0xFFFF
        return bytes(_DOND_BYTES)

    def _fragments(self, nal: bytes) -> list[bytes]:
        header = bytes([nal[0] & 0x81 | FU << 1, nal[1]])
        body = nal[_PAYLOAD_HEADER_BYTES:]
        donl = self._next_donl() if self.donl else b""
        first_step = self.max_payload_bytes - _PAYLOAD_HEADER_BYTES - _FU_HEADER_BYTES - len(donl)
        step = self.max_payload_bytes - _PAYLOAD_HEADER_BYTES - _FU_HEADER_BYTES
        chunks = [body[:first_step]] + [body[pos:pos + step] for pos in range(first_step, len(body), step)]
        fragments = []
        for index, chunk in enumerate(chunks):
            start = 0x80 if index == 0 else 0
            end = 0x40 if index == len(chunks) - 1 else 0
            fu_header = bytes([start | end | nal_type(nal)])
            fragments.append(header + fu_header + (donl if index == 0 else b"") + chunk)
        return fragments
