"""One camera's connection state machine: pure logic driven by inputs and a clock.

The asyncio shell (:mod:`dalistream.ingest.camera`) feeds it what happened — a session came up,
a packet arrived, a session failed, time passed — and carries out the actions it returns. It
never touches sockets or sleeps, so every path (reconnect, stall, keep-alive, UDP→TCP fallback,
backoff and its reset) is tested with plain numbers.

States and transitions::

    IDLE ──start──▶ CONNECTING ──connected──▶ PLAYING ──failed / no data──▶ BACKING_OFF
                        │                        └─keep-alive due: KeepAlive          │
                        └──────────────failed─────────────────────────────▶ BACKING_OFF
    BACKING_OFF ──retry time reached (tick)──▶ CONNECTING

A session ends either from outside (:meth:`ConnectionMachine.failed`: refused, RTSP error,
closed by the server) or from inside (:meth:`ConnectionMachine.tick` sees no packet for
``no_data_timeout_s`` — a stalled camera — and returns :class:`Disconnect`, which the shell
carries out). Each end emits ``disconnected`` (with its reason) and ``reconnecting`` (attempt,
delay, transport).

Transport: a transport is *refused* when SETUP is answered 461 Unsupported Transport, or when a
UDP session plays but never receives a packet (a network that blocks UDP once keeps blocking
it). ``"auto"`` starts with TCP and moves to the other transport when one is refused, each
refusal remembered for the camera's lifetime, as FFmpeg-based tools do; ``"udp"`` falls back to
TCP for good when UDP is refused; ``"tcp"`` stays TCP, as configured.

Backoff: attempt ``n`` (1-based) waits ``backoff_first_s * 2**(n-1)``, capped at
``backoff_cap_s``, scaled by a jitter factor drawn from ``[1 - jitter, 1]`` so the cap is never
exceeded and cameras behind one switch do not reconnect in lockstep. A session that streamed
for ``backoff_reset_s`` before it ended restarts the sequence at attempt 1.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TCP = "tcp"
UDP = "udp"
AUTO = "auto"
KEEPALIVE_FRACTION = 0.5  # of the server's session timeout


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    PLAYING = "playing"
    BACKING_OFF = "backing_off"


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new RTSP session with this RTP transport ("tcp" or "udp")."""

    transport: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the current session (the machine already decided it is dead)."""

    reason: str


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Send an RTSP keep-alive (GET_PARAMETER or OPTIONS) on the current session."""


@dataclass(frozen=True, slots=True)
class Emit:
    """Report an event record: ``event`` plus its fields."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Action = Connect | Disconnect | KeepAlive | Emit


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """The timing rules of one camera's connection (all in seconds)."""

    transport: str = TCP  # "tcp", "udp" or "auto"
    no_data_timeout_s: float = 5.0
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    backoff_reset_s: float = 10.0
    jitter: float = 0.2  # the delay is scaled by a factor drawn from [1 - jitter, 1]

    def __post_init__(self) -> None:
        if self.transport not in (TCP, UDP, AUTO):
            raise ValueError(f"transport must be {TCP!r}, {UDP!r} or {AUTO!r}, got {self.transport!r}")
        if not (self.no_data_timeout_s > 0 and self.backoff_first_s > 0 and self.backoff_reset_s > 0):
            raise ValueError("timeouts and backoff times must be > 0")
        if not self.backoff_cap_s >= self.backoff_first_s:
            raise ValueError("backoff_cap_s must be >= backoff_first_s")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")

    def backoff_s(self, attempt: int, uniform: float) -> float:
        """Delay before ``attempt`` (1-based); ``uniform`` is a random draw from [0, 1)."""
        base = min(self.backoff_first_s * 2.0 ** min(attempt - 1, 64), self.backoff_cap_s)
        return base * (1.0 - self.jitter * uniform)


class ConnectionMachine:
    """See the module docstring. ``random`` returns draws from [0, 1) (e.g. ``random.random``)."""

    def __init__(self, policy: ConnectionPolicy, random: Callable[[], float]) -> None:
        self.policy = policy
        self.transport = TCP if policy.transport == AUTO else policy.transport
        self._refused: set[str] = set()  # transports the camera refused, remembered
        self.state = State.IDLE
        self.attempt = 0  # failed attempts since the last healthy session
        self._random = random
        self._retry_at = math.inf
        self._first_packet = math.nan
        self._last_data = math.nan
        self._keepalive_s = math.inf
        self._keepalive_at = math.inf

    def start(self) -> list[Action]:
        """Begin: the first connection attempt, at once."""
        if self.state is not State.IDLE:
            raise RuntimeError(f"start() in state {self.state.value}")
        self.state = State.CONNECTING
        return [Connect(self.transport)]

    def connected(self, now: float, *, session_timeout_s: float, **fields: Any) -> list[Action]:
        """The session is set up and about to play; ``fields`` go into the ``connected`` event.

        ``session_timeout_s`` is the server's (from its Session header); keep-alives go at half
        of it, and not at all when it is 0.
        """
        if self.state is not State.CONNECTING:
            raise RuntimeError(f"connected() in state {self.state.value}")
        self.state = State.PLAYING
        self._first_packet = math.nan
        self._last_data = now
        self._keepalive_s = session_timeout_s * KEEPALIVE_FRACTION if session_timeout_s > 0 else math.inf
        self._keepalive_at = now + self._keepalive_s
        return [Emit("connected", {"transport": self.transport, **fields})]

    def packet(self, now: float) -> None:
        """An RTP packet of the stream arrived (call for every packet; it only records time)."""
        if self.state is State.PLAYING:
            self._last_data = now
            if math.isnan(self._first_packet):
                self._first_packet = now

    def failed(self, now: float, reason: str, *, unsupported_transport: bool = False) -> list[Action]:
        """The current session ended (error, refusal, or closed by the server)."""
        if self.state not in (State.CONNECTING, State.PLAYING):
            raise RuntimeError(f"failed() in state {self.state.value}")
        return self._back_off(now, reason, refused=unsupported_transport)

    def tick(self, now: float) -> list[Action]:
        """Time passed: detect stalls, send keep-alives, start due retries."""
        if self.state is State.BACKING_OFF and now >= self._retry_at:
            self.state = State.CONNECTING
            self._retry_at = math.inf
            return [Connect(self.transport)]
        if self.state is not State.PLAYING:
            return []
        if now >= self._last_data + self.policy.no_data_timeout_s:  # the sum deadline() returns, to the bit
            silent_udp = self.transport == UDP and math.isnan(self._first_packet)
            what = "no UDP packets in" if silent_udp else "no data for"
            reason = f"{what} {self.policy.no_data_timeout_s:g} s"
            return [Disconnect(reason), *self._back_off(now, reason, refused=silent_udp)]
        if now >= self._keepalive_at:
            self._keepalive_at = now + self._keepalive_s
            return [KeepAlive()]
        return []

    def deadline(self) -> float:
        """The clock time by which :meth:`tick` must next be called (``inf``: no need)."""
        if self.state is State.BACKING_OFF:
            return self._retry_at
        if self.state is State.PLAYING:
            return min(self._last_data + self.policy.no_data_timeout_s, self._keepalive_at)
        return math.inf

    def _instead(self) -> str:
        """The transport to try after the current one was refused."""
        other = UDP if self.transport == TCP else TCP
        if self.policy.transport == AUTO and other not in self._refused:
            return other
        if self.policy.transport == UDP:
            return TCP
        return self.transport

    def _back_off(self, now: float, reason: str, *, refused: bool) -> list[Action]:
        healthy = (
            self.state is State.PLAYING
            and not math.isnan(self._first_packet)
            and self._last_data - self._first_packet >= self.policy.backoff_reset_s
        )
        if healthy:
            self.attempt = 0
        self.attempt += 1
        delay = self.policy.backoff_s(self.attempt, self._random())
        self.state = State.BACKING_OFF
        self._retry_at = now + delay
        self._keepalive_at = math.inf
        if refused:
            self._refused.add(self.transport)
            self.transport = self._instead()
        return [
            Emit("disconnected", {"reason": reason}),
            Emit("reconnecting", {"attempt": self.attempt, "delay_s": round(delay, 3), "transport": self.transport}),
        ]
