"""Helpers shared by the H.264 and H.265 depacketizer tests."""

from __future__ import annotations

import io
from collections.abc import Iterable

import av

from dalistream.rtp.depacketizer import AccessUnit, AccessUnitDropped, Depacketizer, DepacketizerEvent
from dalistream.rtp.packet import RtpPacket


def rtp(payload: str | bytes, *, seq: int, ts: int = 0, marker: bool = False, ssrc: int = 1) -> RtpPacket:
    """A packet with ``payload`` given as bytes or hex."""
    if isinstance(payload, str):
        payload = bytes.fromhex(payload)
    return RtpPacket(pt=96, marker=marker, seq=seq, ts=ts, ssrc=ssrc, payload=payload)


def feed_all(depacketizer: Depacketizer, packets: Iterable[RtpPacket], *, flush: bool = True) -> list[DepacketizerEvent]:
    events = [event for packet in packets for event in depacketizer.feed(packet)]
    return events + depacketizer.flush() if flush else events


def units(events: Iterable[DepacketizerEvent]) -> list[AccessUnit]:
    return [event for event in events if isinstance(event, AccessUnit)]


def drops(events: Iterable[DepacketizerEvent]) -> list[tuple[int, str]]:
    return [(event.ts, event.reason) for event in events if isinstance(event, AccessUnitDropped)]


def decoded_frames(annexb_stream: bytes, container_format: str) -> int:
    """How many frames FFmpeg decodes from an Annex-B stream ("h264" or "hevc")."""
    with av.open(io.BytesIO(annexb_stream), format=container_format) as container:
        return sum(1 for _ in container.decode(video=0))
