"""A publisher's bounded outbox: messages wait here until the broker acknowledges them.

:meth:`Outbox.put` never blocks: beyond ``capacity`` waiting messages the oldest are dropped,
counted. :meth:`Outbox.take` hands the next message out and keeps it *in flight* until
:meth:`Outbox.done`; when the connection is lost, :meth:`Outbox.requeue` puts every message in
flight back at the front, in the order they were put, so a QoS 1 message is held until the
broker has it (it may then arrive twice: at least once).

An outage (the broker away) or a drop opens a *gap*: when it started, why (what started it),
and how many messages it cost. :meth:`Outbox.connected` closes an outage's gap at reconnection;
:meth:`Outbox.settle` closes a gap of drops while connected once the outbox is empty again.
Each closed gap comes back as the fields of an ``mqtt_gap`` event.

Shared by two threads (the runtime's submits, the publisher's loop): every method takes the lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dalistream import records

BEHIND = "the broker took messages more slowly than they came (buffer full)"


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish: ``body`` is a record (sent as its JSON line) or raw bytes."""

    id: int  # order of arrival
    topic: str
    body: Any
    retain: bool = False


class Outbox:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._waiting: deque[Message] = deque()
        self._in_flight: dict[int, Message] = {}
        self._next_id = 0
        self._gap: dict[str, Any] | None = None  # since, reason, dropped, outage (broker away)
        self.published = 0
        self.dropped = 0

    def __len__(self) -> int:
        """Messages waiting or in flight."""
        with self._lock:
            return len(self._waiting) + len(self._in_flight)

    def put(self, items: Iterable[tuple[str, Any, bool]], now: float, *, first: bool = False) -> None:
        """Queue ``(topic, body, retain)`` items; ``first``: one ahead of all that wait, pushing
        none out (an ``mqtt_gap`` event must not cost a message it is about)."""
        with self._lock:
            messages = []
            for topic, body, retain in items:
                messages.append(Message(self._next_id, topic, body, retain))
                self._next_id += 1
            if first:
                self._waiting.extendleft(reversed(messages))
            else:
                self._waiting.extend(messages)
                self._trim(now)

    def take(self) -> Message | None:
        """The next message (now in flight), or None when none waits."""
        with self._lock:
            if not self._waiting:
                return None
            message = self._waiting.popleft()
            self._in_flight[message.id] = message
            return message

    def done(self, message: Message) -> None:
        """The broker has ``message`` (QoS 1: acknowledged; QoS 0: sent)."""
        with self._lock:
            if self._in_flight.pop(message.id, None) is not None:
                self.published += 1

    def lose(self, message: Message, now: float, reason: str) -> None:
        """``message`` cannot be sent at all (e.g. its file is gone): dropped, counted."""
        with self._lock:
            if self._in_flight.pop(message.id, None) is not None:
                self._drop(1, now, reason)

    def requeue(self, now: float) -> None:
        """The connection is gone: what was in flight waits again, first, in order."""
        with self._lock:
            self._waiting.extendleft(sorted(self._in_flight.values(), key=lambda m: m.id, reverse=True))
            self._in_flight.clear()
            self._trim(now)

    def disconnected(self, now: float, reason: str) -> bool:
        """The broker is away for ``reason``; True when this starts an outage (not a retry)."""
        with self._lock:
            if self._gap is not None and self._gap["outage"]:
                self._gap["latest"] = reason
                return False
            if self._gap is None:
                self._gap = {"since": now, "dropped": 0}
            self._gap.update(reason=reason, latest=reason, outage=True)
            return True

    def connected(self, now: float) -> dict[str, Any] | None:
        """The broker is back: the gap that ends here (``mqtt_gap`` fields), if one was open."""
        with self._lock:
            return self._close_gap(now)

    def settle(self, now: float) -> dict[str, Any] | None:
        """While connected: a gap of drops ends once nothing waits (its fields), else None."""
        with self._lock:
            if self._gap is None or self._gap["outage"] or self._waiting:
                return None
            return self._close_gap(now)

    def drop_all(self, now: float, reason: str) -> dict[str, Any] | None:
        """At the end: whatever waits or is in flight is dropped; the gap left open, if any."""
        with self._lock:
            self._drop(len(self._waiting) + len(self._in_flight), now, reason)
            self._waiting.clear()
            self._in_flight.clear()
            return self._close_gap(now)

    @property
    def gap_reason(self) -> str | None:
        """Why the broker is away right now (the latest reason of an outage under way), else None."""
        with self._lock:
            return self._gap["latest"] if self._gap is not None and self._gap["outage"] else None

    def _trim(self, now: float) -> None:
        overflow = len(self._waiting) - self._capacity
        if overflow > 0:
            for _ in range(overflow):
                self._waiting.popleft()
            self._drop(overflow, now, BEHIND)

    def _drop(self, count: int, now: float, reason: str) -> None:
        if not count:
            return
        self.dropped += count
        if self._gap is None:
            self._gap = {"since": now, "dropped": 0, "reason": reason, "outage": False}
        self._gap["dropped"] += count

    def _close_gap(self, now: float) -> dict[str, Any] | None:
        gap, self._gap = self._gap, None
        if gap is None:
            return None
        return {"from": records.iso_utc(gap["since"]), "to": records.iso_utc(now),
                "messages_dropped": gap["dropped"], "reason": gap["reason"]}
