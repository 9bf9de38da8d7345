"""One camera's ingest task: RTSP session → RTP → depacketizer → access units, reconnecting."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiortsp.rtsp.errors import RTSPError

from dalistream.config import CameraConfig
from dalistream.metrics import Stages
from dalistream.rtp.h264 import AccessUnit, AccessUnitDropped, H264Depacketizer, PacketLoss
from dalistream.rtp.packet import RtpError, RtpPacket
from dalistream.rtp.sdp import SdpError, VideoFormat
from dalistream.rtp.timestamps import TimestampUnwrapper

from .rtsp import RtspSession

log = structlog.get_logger(__name__)

NO_DATA_TIMEOUT_S = 5.0
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class ReceivedAccessUnit:
    """An access unit with the times the pipeline needs downstream."""

    data: bytes
    key: bool
    pts: float  # seconds since the session's first RTP timestamp
    received: float  # time.monotonic() when its last packet arrived
    wallclock: float  # time.time() at the same moment


class IngestSink(Protocol):
    """What the ingest hands its results to (the runtime)."""

    def stream_started(self, camera: str, fmt: VideoFormat) -> None: ...
    def access_unit(self, camera: str, unit: ReceivedAccessUnit) -> None: ...
    def event(self, camera: str, event: str, **fields: Any) -> None: ...
    def lost(self, camera: str, *, packets: int = 0, frames: int = 0, malformed: int = 0) -> None: ...


class CameraIngest:
    """Keeps one camera streaming: connects, depacketizes, and reconnects with backoff.

    Peer errors (refused connection, RTSP error, bad SDP, no data) end the session with a
    ``disconnected`` event carrying the reason, then a retry after an exponential, jittered
    backoff that resets once a session has delivered video. Malformed RTP packets are
    counted and dropped; they never end the session.
    """

    def __init__(self, camera: CameraConfig, sink: IngestSink, stages: Stages, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.camera = camera
        self._sink = sink
        self._stages = stages
        self._clock = clock
        self._session: RtspSession | None = None
        self._depacketizer: H264Depacketizer | None = None
        self._unwrapper: TimestampUnwrapper | None = None
        self._payload_type = -1
        self._delivered = False

    async def run(self) -> None:
        """Stream until cancelled."""
        delay = BACKOFF_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            self._delivered = False
            self._session = RtspSession(
                self.camera.url,
                self.camera.transport,
                timeout_s=self.camera.timeout_s,
                no_data_timeout_s=NO_DATA_TIMEOUT_S,
            )
            try:
                await self._session.run(self._on_format, self._on_rtp)
                reason = "closed by server"
            except (RTSPError, SdpError, OSError, TimeoutError, AssertionError) as exc:
                # AssertionError: aiortsp asserts on transport replies it did not expect.
                reason = _describe(exc, self._session.password)
            if self._delivered:
                delay, attempt = BACKOFF_FIRST_S, 0
            self._sink.event(self.camera.id, "disconnected", reason=reason)
            wait_s = delay * random.uniform(0.8, 1.2)
            self._sink.event(self.camera.id, "reconnecting", attempt=attempt + 1, delay_s=round(wait_s, 2))
            await asyncio.sleep(wait_s)
            delay = min(delay * 2, BACKOFF_CAP_S)

    def _on_format(self, fmt: VideoFormat) -> None:
        if fmt.codec != "H264":
            raise SdpError(f"codec {fmt.codec} is not supported yet")
        self._depacketizer = H264Depacketizer(fmt.parameter_sets)
        self._unwrapper = TimestampUnwrapper(fmt.clock_rate)
        self._payload_type = fmt.payload_type
        self._sink.stream_started(self.camera.id, fmt)
        self._sink.event(self.camera.id, "connected", transport=self.camera.transport, codec=fmt.codec)

    def _on_rtp(self, data: bytes) -> None:
        with self._stages.measure("receive+depacketize"):
            try:
                packet = RtpPacket.parse(data)
            except RtpError as exc:
                log.debug("malformed RTP packet dropped", camera=self.camera.id, error=str(exc))
                self._sink.lost(self.camera.id, malformed=1)
                return
            if packet.pt != self._payload_type:
                return
            self._session.count_received(packet)
            for item in self._depacketizer.feed(packet):
                self._dispatch(item)

    def _dispatch(self, item: AccessUnit | PacketLoss | AccessUnitDropped) -> None:
        match item:
            case AccessUnit():
                now = self._clock()
                self._delivered = True
                self._sink.access_unit(
                    self.camera.id,
                    ReceivedAccessUnit(item.data, item.key, self._unwrapper.seconds(item.ts), now, time.time()),
                )
            case PacketLoss():
                self._sink.lost(self.camera.id, packets=item.lost)
            case AccessUnitDropped(reason="waiting_for_idr"):
                pass  # a stream joined mid-GOP starts at its next IDR: nothing was lost
            case AccessUnitDropped():
                self._sink.lost(self.camera.id, frames=1)


def _describe(exc: BaseException, secret: str | None) -> str:
    """A one-line reason for an event, with the camera's password never in it."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text.replace(secret, "***") if secret else text
