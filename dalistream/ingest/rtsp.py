"""A thin layer over aiortsp's low-level API: one RTSP session that hands us raw RTP bytes.

aiortsp parses RTP with dpkt, which keeps header extensions and padding in the payload; its
transports are subclassed here so datagrams go to our own parser instead (and still feed
aiortsp's RTCP receiver statistics, which servers use to keep UDP sessions alive).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from aiortsp.rtsp.connection import RTSPConnection
from aiortsp.rtsp.errors import RTSPConnectionError, RTSPError, RTSPResponseError
from aiortsp.rtsp.parser import RTSPResponse
from aiortsp.rtsp.session import RTSPMediaSession, sanitize_rtsp_url
from aiortsp.transport import TCPTransport, UDPTransport

from dalistream.config import DEFAULT_PORTS, CameraConfig
from dalistream.rtp.packet import RtpPacket
from dalistream.rtp.sdp import VideoFormat, video_format

from .auth import Credentials
from .limits import ReceiveBudget, printable
from .secure_connection import (
    DEFAULT_RTSPS_PORT,
    RedactingLogger,
    RtspConnection,
    client_ssl_context,
    credential_secrets,
    redact,
)

DEFAULT_RTSP_PORT = DEFAULT_PORTS["rtsp"]
DEFAULT_SESSION_TIMEOUT_S = 60.0  # RFC 2326 §12.37, when the server's Session header has none
UNSUPPORTED_TRANSPORT = 461
REASON_LIMIT = 300  # characters of an event's reason
DEFAULT_MAX_RECEIVE_MBPS = 100.0  # a 4K camera sends 15-25 Mbit/s

# aiortsp logs through stdlib logging; we hand it this logger so users can silence it at will.
_AIORTSP_LOGGER = logging.getLogger("dalistream.aiortsp")

PacketHandler = Callable[[bytes], None]


class _RawRtp:
    """Mixin for aiortsp transports: RTP datagrams go to ``on_rtp`` unparsed (UDP ones first
    through the camera's receive ``budget``), and RTCP problems never leave the transport."""

    on_rtp: PacketHandler
    budget: ReceiveBudget | None = None  # UDP only: interleaved data is counted by the connection

    def handle_rtp_data(self, data: bytes) -> None:
        if self.budget is not None and (over := self.budget.spend(len(data), time.monotonic())):
            self.close(RTSPConnectionError(over))
            return
        self.on_rtp(data)

    def handle_rtcp_data(self, data: bytes) -> None:
        try:
            super().handle_rtcp_data(data)
        except Exception as exc:  # aiortsp's RTCP parser on a malformed report: drop it, as RTP
            self.logger.debug("malformed RTCP packet dropped: %r", exc)

    async def rtcp_loop(self) -> None:
        """aiortsp's receiver-report loop, minus its traceback on stderr: a report that cannot
        be built or sent is skipped (servers only use them to keep UDP sessions alive)."""
        initial = True
        while self.running:
            await asyncio.sleep(self.stats.rtcp_interval(initial))
            initial = False
            try:
                if report := self.stats.build_rtcp():
                    await self.send_rtcp_report(report)
            except Exception as exc:
                self.logger.debug("RTCP receiver report not sent: %r", exc)


class _TcpTransport(_RawRtp, TCPTransport):
    pass


class _UdpTransport(_RawRtp, UDPTransport):
    pass


class UnsupportedTransportError(RTSPError):
    """The server answered SETUP with 461 Unsupported Transport (e.g. it refuses RTP over UDP)."""


class _MediaSession(RTSPMediaSession):
    """aiortsp's session, remembering the server's session timeout and naming a 461 reply."""

    timeout_s = DEFAULT_SESSION_TIMEOUT_S

    async def setup(self) -> None:
        try:
            await super().setup()
        except RTSPResponseError as exc:
            if exc.response is not None and exc.response.status == UNSUPPORTED_TRANSPORT:
                raise UnsupportedTransportError("SETUP answered 461 Unsupported Transport") from exc
            raise

    def save_session(self, resp: RTSPResponse) -> None:
        """The session id and timeout from SETUP's ``Session: id[;timeout=s]`` (RFC 2326 §12.37).

        A timeout that is not a number (``timeout=sixty``) is a quirk, not a reason to refuse
        the camera: like FFmpeg, keep the default and say so.
        """
        value = resp.headers.get("session")
        if not value:
            raise RTSPError("error on SETUP: no Session header in the reply")
        session_id, *options = value.split(";")
        self.session_id = session_id.strip()
        for option in options:
            name, _, text = option.partition("=")
            if name.strip().lower() != "timeout":
                continue
            try:
                timeout = float(text)
            except ValueError:
                timeout = math.nan
            if math.isfinite(timeout) and timeout >= 0:
                self.timeout_s = timeout
            else:
                self.logger.warning("invalid session timeout %r in the SETUP reply; assuming %g s", text.strip(), self.timeout_s)


class RtspSession:
    """One connection to a camera: DESCRIBE/SETUP/PLAY, then plays until it ends.

    ``on_rtp`` receives every RTP datagram's bytes; call :meth:`count_received` with the
    parsed packet so RTCP receiver reports stay right. :meth:`run` returns when the server
    closes the connection and raises when it fails (connection or RTSP errors;
    :class:`UnsupportedTransportError` for a 461 reply to SETUP). Timing is the caller's:
    it sends :meth:`keep_alive` when due and :meth:`close` s a session it judges dead.
    """

    def __init__(
        self,
        url: str,
        transport: str,
        *,
        timeout_s: float,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_receive_mbps: float = DEFAULT_MAX_RECEIVE_MBPS,
    ) -> None:
        """``credentials`` default to those in ``url`` (percent-decoded); an ``rtsps://`` URL
        uses TLS with ``ssl_context`` (default: verify against the system's trust store); a
        peer sending over ``max_receive_mbps`` is disconnected."""
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        tls = parts.scheme == "rtsps"
        self.port = parts.port or (DEFAULT_RTSPS_PORT if tls else DEFAULT_RTSP_PORT)
        if credentials is None and parts.username:
            credentials = Credentials(unquote(parts.username), unquote(parts.password or ""))
        self.credentials = credentials
        self.ssl_context = (ssl_context or client_ssl_context(verify=True, ca_file=None)) if tls else None
        self.media_url = sanitize_rtsp_url(url)
        self.transport_name = transport
        self.timeout_s = timeout_s
        self.session_timeout_s = DEFAULT_SESSION_TIMEOUT_S  # the server's, known once on_format is called
        self.budget = ReceiveBudget(max_receive_mbps * 1e6 / 8)
        self._transport: _TcpTransport | _UdpTransport | None = None
        self._connection: RTSPConnection | None = None
        self._session: _MediaSession | None = None

    @classmethod
    def for_camera(cls, camera: CameraConfig, transport: str) -> RtspSession:
        """A session with ``camera``'s URL, timeout, credentials and TLS settings."""
        ssl_context = None
        if urlsplit(camera.url).scheme == "rtsps":
            ssl_context = client_ssl_context(verify=camera.tls_verify, ca_file=camera.tls_ca_file or None)
        credentials = None
        if (user_password := camera.credentials()) is not None:
            credentials = Credentials(*user_password)
        return cls(camera.url, transport, timeout_s=camera.timeout_s, credentials=credentials, ssl_context=ssl_context,
                   max_receive_mbps=camera.max_receive_mbps)

    def describe(self, error: BaseException) -> str:
        """A one-line reason for an event about ``error``: this camera's credentials never in it,
        peer text escaped and cut short."""
        line = f"{type(error).__name__}: {error}".splitlines()[0]
        return printable(redact(line, credential_secrets(self.credentials)), REASON_LIMIT)

    def count_received(self, packet: RtpPacket) -> None:
        if self._transport is not None:
            self._transport.stats.update(packet)

    async def keep_alive(self) -> None:
        """Send GET_PARAMETER (or OPTIONS) so the server keeps the session; raises on failure."""
        if self._session is not None:
            await self._session.keep_alive()

    def close(self) -> None:
        """Drop the connection now: :meth:`run` then ends without waiting on the server."""
        if self._connection is not None:
            self._connection.close()

    async def run(self, on_format: Callable[[VideoFormat], None], on_rtp: PacketHandler) -> None:
        """Play the stream; ``on_format`` is called once the SDP is known, before PLAY."""
        transport_class = _TcpTransport if self.transport_name == "tcp" else _UdpTransport
        # aiortsp logs requests with their Authorization headers: its logger redacts them.
        logger = RedactingLogger(_AIORTSP_LOGGER, credential_secrets(self.credentials))
        async with RtspConnection(
            self.host,
            self.port,
            self.credentials,
            logger=logger,
            timeout=self.timeout_s,
            ssl_context=self.ssl_context,
            budget=self.budget,
        ) as connection:
            self._connection = connection
            # timeout=0: aiortsp's own no-data watchdog stays off; the caller's state machine decides.
            transport = transport_class(connection, logger=logger, timeout=0)
            transport.on_rtp = on_rtp
            if transport_class is _UdpTransport:
                transport.budget = self.budget
            async with transport:
                async with _MediaSession(connection, self.media_url, transport=transport, logger=logger) as session:
                    self.session_timeout_s = session.timeout_s
                    on_format(video_format(session.sdp))
                    self._transport, self._session = transport, session
                    try:
                        await session.play()
                        await self._until_closed(connection, transport)
                    finally:
                        self._transport = self._session = None

    @staticmethod
    async def _until_closed(connection: RTSPConnection, transport: _TcpTransport | _UdpTransport) -> None:
        done, _ = await asyncio.wait([connection.result, transport.result], return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            future.result()  # raises the connection's or transport's error
