"""A loss-injecting relay on loopback: an RTSP proxy whose RTP-over-UDP passes through us.

The proxy forwards the RTSP connection unchanged except for ``client_port=A-B`` in SETUP
requests, which it replaces with a relay port pair of its own; datagrams the server sends to
that pair go on to the client's ports ``A-B``, and each RTP datagram is dropped with
probability ``loss`` (a seeded random source, so a run is reproducible). RTCP passes untouched.
"""

from __future__ import annotations

import asyncio
import random
import re

_CLIENT_PORT = re.compile(rb"client_port=(\d+)-(\d+)")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d+)")


class _Forwarder(asyncio.DatagramProtocol):
    """Relays datagrams arriving on its port to ``target``, dropping some."""

    def __init__(self, relay: LossyRelay, target: tuple[str, int], lossy: bool) -> None:
        self.relay = relay
        self.target = target
        self.lossy = lossy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.lossy:
            self.relay.forwarded += 1
            if self.relay.random.random() < self.relay.loss:
                self.relay.dropped += 1
                return
        self.transport.sendto(data, self.target)


class LossyRelay:
    """``async with LossyRelay(host, port, loss=0.05) as relay``: point clients at ``relay.url(path)``."""

    def __init__(self, upstream_host: str, upstream_port: int, *, loss: float, seed: int = 1) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.loss = loss
        self.random = random.Random(seed)
        self.forwarded = 0  # RTP datagrams that reached the relay
        self.dropped = 0  # of which dropped
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def __aenter__(self) -> LossyRelay:
        self._server = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for transport in self._transports:
            transport.close()

    async def _proxy(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            self._tasks.discard(task)
            return
        up = asyncio.create_task(self._requests(client_reader, server_writer))
        down = asyncio.create_task(self._pipe(server_reader, client_writer))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            client_writer.close()
            server_writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client → server, one RTSP request at a time, with SETUP's client ports replaced."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            match = _CLIENT_PORT.search(head)
            if match:
                rtp, rtcp = await self._open_pair(int(match[1]), int(match[2]))
                head = head[: match.start()] + b"client_port=%d-%d" % (rtp, rtcp) + head[match.end() :]
            length = _CONTENT_LENGTH.search(head)
            body = await reader.readexactly(int(length[1])) if length else b""
            writer.write(head + body)
            await writer.drain()

    async def _open_pair(self, client_rtp: int, client_rtcp: int) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ports = []
        for target, lossy in (((("127.0.0.1", client_rtp)), True), ((("127.0.0.1", client_rtcp)), False)):
            transport, _ = await loop.create_datagram_endpoint(
                lambda target=target, lossy=lossy: _Forwarder(self, target, lossy), local_addr=("127.0.0.1", 0)
            )
            self._transports.append(transport)
            ports.append(transport.get_extra_info("sockname")[1])
        return ports[0], ports[1]
