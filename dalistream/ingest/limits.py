"""Bounds on what one camera may make us hold or log: header sizes, receive rate, log text.

A peer is untrusted: an endless header line, a flood of bytes or control characters in a
reply must cost only that camera its session, never memory, CPU or the operator's terminal.
These checks are pure; :class:`~dalistream.ingest.secure_connection.RtspConnection` applies
them to aiortsp's parser and our own transports.
"""

from __future__ import annotations

from aiortsp.rtsp.parser import HTTPLikeMsg, RTSPParser

MAX_HEADER_BYTES = 64 * 1024  # one RTSP message's start line and headers together
MAX_HEADER_LINES = 128
LOG_TEXT_LIMIT = 1024  # characters of peer text kept in one log argument
# aiortsp caps a message body (the SDP) at 64 KiB and an interleaved frame's length is 16 bits.

# C0 and C1 control characters and DEL, shown as \xNN: peer text never drives the terminal.
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}


def printable(text: str, limit: int = LOG_TEXT_LIMIT) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters (marked)."""
    length = len(text)
    text = text[:limit].translate(_CONTROL)
    return text + f"… [{length - limit} more characters cut]" if length > limit else text


def parser_overrun(parser: RTSPParser) -> str | None:
    """Why the message aiortsp is still parsing is too large to keep receiving, or None."""
    message = parser.pending_msg
    if not isinstance(message, HTTPLikeMsg) or message.headers is not None:
        return None  # nothing pending, an interleaved frame (at most 64 KiB), or a body (aiortsp caps it)
    held = len(message._untreated_data) + sum(len(name) + len(value) + 4 for name, value in message.headerlist)
    if held > MAX_HEADER_BYTES:
        return f"RTSP message headers longer than {MAX_HEADER_BYTES // 1024} KiB"
    if len(message.headerlist) > MAX_HEADER_LINES:
        return f"more than {MAX_HEADER_LINES} RTSP header lines"
    return None


class ReceiveBudget:
    """At most ``bytes_per_s`` per one-second window from one camera (pure: the caller's clock)."""

    def __init__(self, bytes_per_s: float) -> None:
        if not bytes_per_s > 0:
            raise ValueError(f"bytes_per_s must be > 0, got {bytes_per_s}")
        self.bytes_per_s = bytes_per_s
        self._window_start = float("-inf")
        self._received = 0

    def spend(self, size: int, now: float) -> str | None:
        """Count ``size`` bytes received at ``now``; the reason to disconnect when over budget."""
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._received = 0
        self._received += size
        if self._received > self.bytes_per_s:
            return f"receiving over {self.bytes_per_s * 8 / 1e6:g} Mbit/s (the camera's max_receive_mbps)"
        return None
