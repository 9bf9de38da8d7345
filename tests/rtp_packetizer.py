"""Test-only H.264 RTP packetizer (RFC 6184 non-interleaved mode) and Annex-B helpers.

It is the depacketizer's counterpart in round-trip tests: single NAL unit packets,
STAP-A for runs of small NAL units and FU-A for large ones, marker bit on the last
packet of each access unit.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from dalistream.rtp.packet import RtpPacket

START_CODE = b"\x00\x00\x00\x01"
STAP_A = 24
FU_A = 28
VIDEO_CLOCK_RATE = 90_000  # Hz
_FU_HEADER_BYTES = 2
_STAP_A_HEADER_BYTES = 1
_STAP_A_SIZE_BYTES = 2


def split_annexb(stream: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (3- or 4-byte start codes), trailing zero bytes dropped."""
    starts = [match.end() for match in re.finditer(b"\x00\x00\x01", stream)]
    ends = [start - 3 for start in starts[1:]] + [len(stream)]
    return [stream[start:end].rstrip(b"\x00") for start, end in zip(starts, ends)]


def annexb(nals: Sequence[bytes]) -> bytes:
    """The NAL units as Annex-B with 4-byte start codes, as the depacketizer writes them."""
    return b"".join(START_CODE + nal for nal in nals)


class Packetizer(ABC):
    """Packs access units (lists of NAL units without start codes) into RTP packets.

    The codec subclass says how one NAL unit, an aggregate of small ones and the fragments of a
    large one are laid out; the packing decisions are the same for H.264 and H.265.
    """

    def __init__(self, max_payload_bytes: int = 1400, *, pt: int = 96, ssrc: int = 0x1234_5678,
                 first_seq: int = 0, aggregate: bool = True) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.pt = pt
        self.ssrc = ssrc
        self.seq = first_seq & 0xFFFF
        self.aggregate = aggregate

    def packetize(self, nals: Sequence[bytes], ts: int) -> list[RtpPacket]:
        """Packets of one access unit with RTP timestamp ``ts``."""
        payloads: list[bytes] = []
        pending: list[bytes] = []  # small NAL units waiting to be aggregated

        def close_aggregate() -> None:
            if len(pending) == 1:
                payloads.append(self._single(pending[0]))
            elif pending:
                payloads.append(self._aggregate(pending))
            pending.clear()

        for nal in nals:
            if self._single_size(nal) > self.max_payload_bytes:
                close_aggregate()
                payloads += self._fragments(nal)
            elif self.aggregate and self._aggregate_size([*pending, nal]) <= self.max_payload_bytes:
                pending.append(nal)
            else:
                close_aggregate()
                pending.append(nal)
        close_aggregate()

        packets = []
        for index, payload in enumerate(payloads):
            packets.append(RtpPacket(pt=self.pt, marker=index == len(payloads) - 1, seq=self.seq,
                                     ts=ts & 0xFFFF_FFFF, ssrc=self.ssrc, payload=payload))
            self.seq = (self.seq + 1) & 0xFFFF
        return packets

    def packetize_all(self, access_units: Sequence[Sequence[bytes]], *, first_ts: int = 0,
                      frame_rate: int = 30) -> list[RtpPacket]:
        """Packets of consecutive access units, one frame period apart on the 90 kHz clock."""
        step = VIDEO_CLOCK_RATE // frame_rate
        return [packet for index, nals in enumerate(access_units)
                for packet in self.packetize(nals, first_ts + index * step)]

    @abstractmethod
    def _single_size(self, nal: bytes) -> int:
        """Payload bytes of ``nal`` sent alone."""

    @abstractmethod
    def _single(self, nal: bytes) -> bytes:
        """The payload carrying ``nal`` alone."""

    @abstractmethod
    def _aggregate_size(self, nals: Sequence[bytes]) -> int:
        """Payload bytes of one aggregation packet holding ``nals``."""

    @abstractmethod
    def _aggregate(self, nals: Sequence[bytes]) -> bytes:
        """One aggregation packet payload holding ``nals``."""

    @abstractmethod
    def _fragments(self, nal: bytes) -> list[bytes]:
        """Fragmentation unit payloads carrying ``nal``."""


class H264Packetizer(Packetizer):
    """RFC 6184 non-interleaved mode: single NAL unit packets, STAP-A and FU-A."""

    def __init__(self, max_payload_bytes: int = 1400, **kwargs) -> None:
        if max_payload_bytes <= _FU_HEADER_BYTES:
            raise ValueError(f"max_payload_bytes must exceed the {_FU_HEADER_BYTES}-byte FU-A header")
        super().__init__(max_payload_bytes, **kwargs)

    def _single_size(self, nal: bytes) -> int:
        return len(nal)

    def _single(self, nal: bytes) -> bytes:
        return nal

    @staticmethod
    def _aggregate_size(nals: Sequence[bytes]) -> int:
        return _STAP_A_HEADER_BYTES + sum(_STAP_A_SIZE_BYTES + len(nal) for nal in nals)

    @staticmethod
    def _aggregate(nals: Sequence[bytes]) -> bytes:
        # F is the OR of the aggregated units' F bits, NRI their maximum (RFC 6184 5.7).
        forbidden = max(nal[0] & 0x80 for nal in nals)
        nri = max(nal[0] & 0x60 for nal in nals)
        return bytes([forbidden | nri | STAP_A]) + b"".join(len(nal).to_bytes(2) + nal for nal in nals)

    def _fragments(self, nal: bytes) -> list[bytes]:
        indicator = bytes([nal[0] & 0xE0 | FU_A])
        nal_type = nal[0] & 0x1F
        body = nal[1:]
        step = self.max_payload_bytes - _FU_HEADER_BYTES
        chunks = [body[pos:pos + step] for pos in range(0, len(body), step)]
        fragments = []
        for index, chunk in enumerate(chunks):
            start = 0x80 if index == 0 else 0
            end = 0x40 if index == len(chunks) - 1 else 0
            fragments.append(indicator + bytes([start | end | nal_type]) + chunk)
        return fragments
