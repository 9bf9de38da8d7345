"""A thin layer over aiortsp's low-level API: one RTSP session that hands us raw RTP bytes.

aiortsp parses RTP with dpkt, which keeps header extensions and padding in the payload; its
transports are subclassed here so datagrams go to our own parser instead (and still feed
aiortsp's RTCP receiver statistics, which servers use to keep UDP sessions alive).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from aiortsp.rtsp.connection import RTSPConnection
from aiortsp.rtsp.session import RTSPMediaSession, sanitize_rtsp_url
from aiortsp.transport import TCPTransport, UDPTransport

from dalistream.rtp.packet import RtpPacket
from dalistream.rtp.sdp import VideoFormat, video_format

DEFAULT_RTSP_PORT = 554

# aiortsp logs through stdlib logging; we hand it this logger so users can silence it at will.
_AIORTSP_LOGGER = logging.getLogger("dalistream.aiortsp")

PacketHandler = Callable[[bytes], None]


class _RawRtp:
    """Mixin for aiortsp transports: RTP datagrams go to ``on_rtp`` unparsed."""

    on_rtp: PacketHandler

    def handle_rtp_data(self, data: bytes) -> None:
        self.on_rtp(data)


class _TcpTransport(_RawRtp, TCPTransport):
    pass


class _UdpTransport(_RawRtp, UDPTransport):
    pass


class RtspSession:
    """One connection to a camera: DESCRIBE/SETUP/PLAY, then keep-alives until it ends.

    ``on_rtp`` receives every RTP datagram's bytes; call :meth:`count_received` with the
    parsed packet so RTCP receiver reports stay right. :meth:`run` returns when the server
    closes the connection and raises when it fails (connection, RTSP or no-data errors).
    """

    def __init__(self, url: str, transport: str, *, timeout_s: float, no_data_timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or DEFAULT_RTSP_PORT
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.media_url = sanitize_rtsp_url(url)
        self.transport_name = transport
        self.timeout_s = timeout_s
        self.no_data_timeout_s = no_data_timeout_s
        self._transport: _TcpTransport | _UdpTransport | None = None

    def count_received(self, packet: RtpPacket) -> None:
        if self._transport is not None:
            self._transport.stats.update(packet)

    async def run(self, on_format: Callable[[VideoFormat], None], on_rtp: PacketHandler) -> None:
        """Play the stream; ``on_format`` is called once the SDP is known, before PLAY."""
        transport_class = _TcpTransport if self.transport_name == "tcp" else _UdpTransport
        async with RTSPConnection(
            self.host,
            self.port,
            self.username,
            self.password,
            logger=_AIORTSP_LOGGER,
            timeout=self.timeout_s,
        ) as connection:
            transport = transport_class(connection, logger=_AIORTSP_LOGGER, timeout=self.no_data_timeout_s)
            transport.on_rtp = on_rtp
            async with transport:
                async with RTSPMediaSession(
                    connection, self.media_url, transport=transport, logger=_AIORTSP_LOGGER
                ) as session:
                    on_format(video_format(session.sdp))
                    self._transport = transport
                    try:
                        await session.play()
                        await self._keep_alive(connection, transport, session)
                    finally:
                        self._transport = None

    @staticmethod
    async def _keep_alive(connection: RTSPConnection, transport, session: RTSPMediaSession) -> None:
        ended = [connection.result, transport.result]
        while True:
            done, _ = await asyncio.wait(ended, timeout=session.session_keepalive, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                future.result()  # raises the connection's or transport's error
            if done:
                return
            await session.keep_alive()
