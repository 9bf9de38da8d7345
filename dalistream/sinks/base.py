"""The seam between the runtime and the places records go.

The runtime hands every batch of records to each :class:`Sink` in turn; a sink's
:meth:`~Sink.submit` never blocks (each sink has its own bounded queue and its own thread), so a
slow disk or a dead broker never slows the cameras or another sink. What a sink drops it counts
(:class:`SinkState`) and reports as an event in the files. A new kind of sink (Kafka, Redis
Streams, NATS…) is a module of its own implementing this protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SinkState:
    """A sink at a glance, for ``/health`` and ``/metrics``."""

    name: str  # "files", "mqtt"
    up: bool  # records are reaching where they go right now
    problem: str | None  # why not, when not
    sent: int  # records written, messages acknowledged
    dropped: int  # never reached where they go (each on record in an event)
    queued: int  # waiting in the sink

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sink(Protocol):
    """What the runtime asks of a place records go."""

    name: str

    def start(self) -> Sink:
        """Start the sink's thread; records submitted before wait in its queue."""
        ...

    def submit(self, batch: Iterable[Mapping[str, Any]]) -> None:
        """Take records; never blocks (what does not fit is dropped, counted)."""
        ...

    def close(self, timeout_s: float) -> None:
        """Deliver what waits within ``timeout_s`` (what cannot be is dropped, counted), then stop."""
        ...

    def state(self) -> SinkState: ...
