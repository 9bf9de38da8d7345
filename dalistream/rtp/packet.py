"""RTP data packets (RFC 3550 section 5.1): parse from and serialize to wire bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

RTP_VERSION: Final = 2
FIXED_HEADER_BYTES: Final = 12
MAX_CSRC_COUNT: Final = 15
MAX_EXTENSION_BYTES: Final = 0xFFFF * 4  # the length field counts 32-bit words

_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")

_PADDING_BIT: Final = 0x20
_EXTENSION_BIT: Final = 0x10
_MARKER_BIT: Final = 0x80


class RtpError(ValueError):
    """Malformed RTP from the peer."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP data packet.

    Field ranges are checked on construction (``ValueError``: a local programming
    error), so every instance can be serialized and is safe to hand to a depacketizer.
    """

    pt: int
    """Payload type, 0..127."""
    marker: bool
    """The M bit; for video, set on the last packet of an access unit."""
    seq: int
    """Sequence number, 16-bit."""
    ts: int
    """RTP timestamp, 32-bit, in the payload format's clock rate."""
    ssrc: int
    """Synchronization source identifier, 32-bit."""
    csrc: tuple[int, ...] = ()
    """Contributing source identifiers, at most 15."""
    extension: tuple[int, bytes] | None = None
    """``(profile, data)`` of the RFC 3550 header extension; ``data`` is a whole number of 32-bit words."""
    payload: bytes = b""
    """The payload, padding already stripped."""
    padding: int = 0
    """Number of padding bytes on the wire (0 means the P bit is clear), the count byte included."""

    def __post_init__(self) -> None:
        for name, value, bits in (("pt", self.pt, 7), ("seq", self.seq, 16), ("ts", self.ts, 32),
                                  ("ssrc", self.ssrc, 32), ("padding", self.padding, 8)):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"RTP {name} must fit in {bits} bits, got {value}")
        if len(self.csrc) > MAX_CSRC_COUNT:
            raise ValueError(f"RTP allows at most {MAX_CSRC_COUNT} CSRCs, got {len(self.csrc)}")
        if any(not 0 <= csrc < 1 << 32 for csrc in self.csrc):
            raise ValueError(f"RTP CSRCs must fit in 32 bits, got {self.csrc}")
        if self.extension is not None:
            profile, data = self.extension
            if not 0 <= profile < 1 << 16:
                raise ValueError(f"RTP extension profile must fit in 16 bits, got {profile}")
            if len(data) % 4 or len(data) > MAX_EXTENSION_BYTES:
                raise ValueError(
                    f"RTP extension data must be a multiple of 4 bytes and at most {MAX_EXTENSION_BYTES}, "
                    f"got {len(data)}"
                )

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet as received in a datagram or an interleaved frame.

        Raises ``RtpError`` naming the defect when the bytes are not a valid version 2 packet.
        """
        if len(data) < FIXED_HEADER_BYTES:
            raise RtpError(f"RTP packet is {len(data)} bytes, shorter than the {FIXED_HEADER_BYTES}-byte fixed header")
        first, second, seq, ts, ssrc = _FIXED_HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version is {version}, expected {RTP_VERSION}")

        csrc_count = first & 0x0F
        pos = FIXED_HEADER_BYTES + 4 * csrc_count
        if pos > len(data):
            raise RtpError(f"RTP CSRC list ({csrc_count} entries) overruns the {len(data)}-byte packet")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, FIXED_HEADER_BYTES)

        extension = None
        if first & _EXTENSION_BIT:
            if pos + _EXTENSION_HEADER.size > len(data):
                raise RtpError(f"RTP header extension starts at byte {pos} and overruns the {len(data)}-byte packet")
            profile, length_words = _EXTENSION_HEADER.unpack_from(data, pos)
            pos += _EXTENSION_HEADER.size
            end = pos + 4 * length_words
            if end > len(data):
                raise RtpError(
                    f"RTP header extension of {length_words} words overruns the {len(data)}-byte packet"
                )
            extension = (profile, data[pos:end])
            pos = end

        padding = 0
        if first & _PADDING_BIT:
            padding = data[-1]
            if padding == 0:
                raise RtpError("RTP padding bit is set but the padding count is 0")
            if padding > len(data) - pos:
                raise RtpError(
                    f"RTP padding count {padding} exceeds the {len(data) - pos} bytes after the header"
                )

        return cls(
            pt=second & 0x7F,
            marker=bool(second & _MARKER_BIT),
            seq=seq,
            ts=ts,
            ssrc=ssrc,
            csrc=csrc,
            extension=extension,
            payload=data[pos:len(data) - padding],
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        """Serialize; padding is written as zero bytes followed by the count byte.

        ``bytes(RtpPacket.parse(x)) == x`` for every valid ``x`` padded with zeros.
        """
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            first |= _PADDING_BIT
        if self.extension is not None:
            first |= _EXTENSION_BIT
        second = self.pt | (_MARKER_BIT if self.marker else 0)
        parts = [
            _FIXED_HEADER.pack(first, second, self.seq, self.ts, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            profile, data = self.extension
            parts += [_EXTENSION_HEADER.pack(profile, len(data) // 4), data]
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)
