"""One camera's ingest task: RTSP session → RTP → depacketizer → access units, reconnecting.

The decisions (when a session is dead, when to retry, which transport, when to keep alive)
are :class:`~dalistream.ingest.connection_state.ConnectionMachine`'s; this module is its asyncio
shell: it runs the RTSP session as a task, feeds the machine what happens, and carries out
the actions it returns.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

import structlog
from aiortsp.rtsp.errors import RTSPError

from dalistream.config import CameraConfig
from dalistream.metrics import Stages, Tally
from dalistream.rtp import depacketizer_for
from dalistream.rtp.depacketizer import AccessUnit, AccessUnitDropped, Depacketizer, PacketLoss
from dalistream.rtp.packet import RtpError, RtpPacket
from dalistream.rtp.sdp import SdpError, VideoFormat
from dalistream.rtp.timestamps import TimestampUnwrapper

from .connection_state import Action, Connect, ConnectionMachine, ConnectionPolicy, Disconnect, Emit, KeepAlive
from .rtsp import RtspSession, UnsupportedTransportError
from .sink import IngestSink, ReceivedAccessUnit

log = structlog.get_logger(__name__)

RECEIVE_TALLY_PACKETS = 64  # RTP packets whose receive cost is added up before it goes to Stages

# Peer failures that end a session and that we expect. AssertionError: aiortsp asserts on
# transport replies it did not expect. Anything else a session raises is still that camera's
# failure (aiortsp trips over replies it cannot parse), only logged with its traceback.
SESSION_ERRORS = (RTSPError, SdpError, OSError, TimeoutError, AssertionError)


class CameraIngest:
    """Keeps one camera streaming: connects, depacketizes, and reconnects with backoff.

    This is the camera's error boundary: whatever its session raises ends only that session.
    Peer errors (refused connection, RTSP error, bad SDP, no data, failed keep-alive, a reply
    aiortsp cannot parse) end it with a ``disconnected`` event carrying the reason, then a
    ``reconnecting`` event and a retry after the machine's backoff. An exception in our own
    code on the packet path (depacketizer, sink) is an internal error: handed to the sink's
    :meth:`~IngestSink.internal_error` once, the session closed and restarted like any other
    failure, its ``disconnected`` reason saying it was ours. Malformed RTP packets are counted
    and dropped; they never end the session. Nothing here blocks another camera: the session
    is one task, and everything it produces goes to the sink without waiting.
    """

    def __init__(
        self,
        camera: CameraConfig,
        sink: IngestSink,
        stages: Stages,
        *,
        clock: Callable[[], float] = time.monotonic,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.camera = camera
        self._sink = sink
        self._receive_cost = Tally(stages, "receive+depacketize", RECEIVE_TALLY_PACKETS)
        self._clock = clock
        policy = ConnectionPolicy(
            transport=camera.transport,
            no_data_timeout_s=camera.no_data_timeout_s,
            backoff_first_s=camera.backoff_first_s,
            backoff_cap_s=camera.backoff_cap_s,
            backoff_reset_s=camera.backoff_reset_s,
        )
        self._machine = ConnectionMachine(policy, random_source)
        self._changed = asyncio.Event()
        self._session: RtspSession | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._depacketizer: Depacketizer | None = None
        self._unwrapper: TimestampUnwrapper | None = None
        self._payload_type = -1
        self._internal_reason: str | None = None  # set by an internal error until its session ends
        self.packets = 0  # RTP packets of the video stream received, all sessions

    async def run(self) -> None:
        """Stream until cancelled."""
        try:
            self._execute(self._machine.start())
            while True:
                await self._wait()
                self._collect()
                self._execute(self._machine.tick(self._clock()))
        finally:
            await self._shutdown()

    async def _wait(self) -> None:
        """Until the machine's deadline, the end of the session or a keep-alive, or a state change."""
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        waiting = [changed, *(t for t in (self._session_task, self._keepalive_task) if t is not None)]
        left = self._machine.deadline() - self._clock()
        try:
            await asyncio.wait(waiting, timeout=None if math.isinf(left) else max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()

    def _collect(self) -> None:
        """Feed the machine the outcome of a finished keep-alive or session task."""
        if self._keepalive_task is not None and self._keepalive_task.done():
            task, self._keepalive_task = self._keepalive_task, None
            error = task.exception()
            if error is not None:
                reason = "keep-alive failed: " + self._describe(error)
                self._drop_session()
                self._execute(self._machine.failed(self._clock(), reason))
        if self._session_task is not None and self._session_task.done():
            task, self._session_task = self._session_task, None
            error = task.exception()
            if self._internal_reason is not None:
                reason, self._internal_reason = self._internal_reason, None
            elif error is None:
                reason = "closed by server"
            else:
                reason = self._describe(error)
            self._drop_session()  # a keep-alive may still be waiting on the dead connection
            self._execute(
                self._machine.failed(
                    self._clock(), reason, unsupported_transport=isinstance(error, UnsupportedTransportError)
                )
            )

    def _describe(self, error: BaseException) -> str:
        """The event reason for a session that failed with ``error``."""
        if not isinstance(error, SESSION_ERRORS):
            log.debug("camera session failed unexpectedly", camera=self.camera.id, exc_info=error)
        return self._session.describe(error)

    def _internal_error(self, error: Exception) -> None:
        """Our code failed on this camera's packets: report it once and end the session."""
        self._internal_reason = f"internal error: {self._session.describe(error)} (a dalistream bug, logged with its traceback)"
        self._sink.internal_error(self.camera.id, error)
        self._session.close()
        self._changed.set()

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Emit(event, fields):
                    self._sink.event(self.camera.id, event, **fields)
                case Connect(transport):
                    self._session = RtspSession.for_camera(self.camera, transport)
                    self._session_task = asyncio.create_task(
                        self._session.run(self._on_format, self._on_rtp), name=f"rtsp-{self.camera.id}"
                    )
                case KeepAlive() if self._keepalive_task is None and self._session is not None:
                    self._keepalive_task = asyncio.create_task(self._session.keep_alive())
                case KeepAlive():
                    pass  # the previous keep-alive is still waiting for its answer
                case Disconnect(reason):
                    log.debug("closing session", camera=self.camera.id, reason=reason)
                    self._drop_session()

    def _drop_session(self) -> None:
        """Close the current session without waiting for it: its teardown can't stall us."""
        if self._session is not None:
            self._session.close()
        for task in (self._session_task, self._keepalive_task):
            if task is not None:
                task.cancel()
                task.add_done_callback(_retrieve)
        self._session_task = self._keepalive_task = None
        self._receive_cost.flush()

    async def _shutdown(self) -> None:
        tasks = [t for t in (self._session_task, self._keepalive_task) if t is not None]
        self._drop_session()
        if tasks:
            await asyncio.wait(tasks, timeout=self.camera.timeout_s)
        self._receive_cost.flush()

    def _on_format(self, fmt: VideoFormat) -> None:
        try:
            self._depacketizer = depacketizer_for(fmt)
            self._unwrapper = TimestampUnwrapper(fmt.clock_rate)
            self._payload_type = fmt.payload_type
            self._sink.stream_started(self.camera.id, fmt.codec)
            self._execute(self._machine.connected(self._clock(), session_timeout_s=self._session.session_timeout_s, codec=fmt.codec))
        except Exception as exc:
            self._internal_error(exc)
            raise
        self._changed.set()

    def _on_rtp(self, data: bytes) -> None:
        """Called by aiortsp for each RTP datagram; our exceptions never reach aiortsp, which
        would report them as the camera sending invalid data."""
        if self._internal_reason is not None:
            return  # the session is closing after an internal error
        try:
            self._receive(data)
        except Exception as exc:
            self._internal_error(exc)

    def _receive(self, data: bytes) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            self._depacketize(data)
        finally:
            self._receive_cost.add(time.perf_counter() - wall, time.thread_time() - cpu)

    def _depacketize(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError as exc:
            log.debug("malformed RTP packet dropped", camera=self.camera.id, error=str(exc))
            self._sink.lost(self.camera.id, malformed=1)
            return
        if packet.pt != self._payload_type:
            return
        self.packets += 1
        self._session.count_received(packet)
        self._machine.packet(self._clock())
        for item in self._depacketizer.feed(packet):
            self._dispatch(item)

    def _dispatch(self, item: AccessUnit | PacketLoss | AccessUnitDropped) -> None:
        match item:
            case AccessUnit():
                now = self._clock()
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


def _retrieve(task: asyncio.Task[None]) -> None:
    """Done-callback of a session already judged dead: its late outcome changes nothing."""
    if not task.cancelled():
        task.exception()
