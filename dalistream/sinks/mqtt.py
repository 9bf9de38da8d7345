"""Records published to an MQTT broker (``[mqtt]``), from a thread and event loop of their own.

Topics (``<prefix>`` is ``mqtt.topic_prefix``; every JSON message is the record as its file line):

- ``<prefix>/available``: ``online`` once connected, ``offline`` at a clean stop and as the last
  will when the connection dies; retained.
- ``<prefix>/<camera>/events``: the camera's event records; ``<prefix>/events``: the service's
  (``camera`` null: ``mqtt_gap``, ``output_gap``, ``stopped``, …).
- ``<prefix>/<camera>/detections``: every detections record, with ``mqtt.publish_detections``.
- ``<prefix>/<camera>/face/snapshot``: the JPEG bytes of the best crop of the last face that left
  (a ``face_left`` event's ``crop``), retained.
- ``<prefix>/stats``: the ``/health`` summary, every ``mqtt.stats_interval_s`` (:meth:`MqttSink.stats`).

:meth:`MqttSink.submit` never blocks: messages wait in an :class:`~dalistream.sinks.outbox.Outbox`
of ``mqtt.buffer_messages`` (beyond it the oldest are dropped, counted) until the broker
acknowledges them (QoS 1) or they are sent (QoS 0). The client is aiomqtt (on paho-mqtt). A
connection that fails or dies is tried again after a backoff (0.5 s doubling to
``mqtt.backoff_cap_s``, jittered); the first failure of an outage is an ``mqtt_disconnected``
event (``reason``) in the files, and the outage's end an ``mqtt_gap`` event (``from``, ``to``,
``messages_dropped``, ``reason``), written to the files and published first on reconnection.
The password (from ``mqtt.password_env``) goes to the broker and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from dalistream import records
from dalistream.config import MqttConfig
from dalistream.ingest.connection_state import ConnectionPolicy

from .base import SinkState
from .outbox import Message, Outbox

log = structlog.get_logger(__name__)

IN_FLIGHT = 64  # messages sent and not yet acknowledged, at most
KEEPALIVE_S = 10  # a broker silent for 1.5× this is taken for gone
CONNECT_TIMEOUT_S = 10.0  # for the broker's CONNACK
SNAPSHOT_WAIT_S = 5.0  # how long a face_left's crop may take to appear on the disk
SNAPSHOT_POLL_S = 0.2
BACKOFF_FIRST_S = 0.5

Emit = Callable[[list[dict[str, Any]]], None]


def topic_of(record: Mapping[str, Any], prefix: str) -> str:
    """Where ``record`` is published: ``<prefix>[/<camera>]/events`` or ``…/<camera>/detections``."""
    kind = "events" if record.get("type") == "event" else str(record.get("type"))
    camera = record.get("camera")
    return f"{prefix}/{kind}" if camera is None else f"{prefix}/{camera}/{kind}"


def describe(error: BaseException, *, connected: bool) -> str:
    """A failed connection attempt (``connected`` False) or a lost connection, in words, e.g.
    ``the broker refused the connection: [code:135] Not authorized``. No credentials: aiomqtt's
    and paho's messages hold none."""
    if connected:  # aiomqtt's "Disconnected during message iteration" is about our watcher; paho's cause says why
        return f"connection lost: {error.__cause__ or error}"
    text = str(error) or type(error).__name__
    if isinstance(error, aiomqtt.MqttCodeError):  # while connecting: only the broker's CONNACK carries a code
        return f"the broker refused the connection: {text}"
    return f"cannot connect: {text}"


class MqttSink:
    """See the module docstring. ``emit`` takes the sink's own events for the files (called from
    the sink's thread); ``availability``: this process owns ``<prefix>/available`` (a cluster's
    workers leave it to the coordinator); ``client_suffix`` is appended to ``mqtt.client_id``."""

    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        output_dir: Path,
        emit: Emit,
        *,
        availability: bool = True,
        client_suffix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._password = config.password()
        self._output_dir = output_dir
        self._emit = emit
        self._availability = availability
        self._client_id = f"{config.client_id}{client_suffix}" if config.client_id else None
        self._prefix = config.topic_prefix
        self._clock = clock
        self._outbox = Outbox(config.buffer_messages)
        self._backoff = ConnectionPolicy(backoff_first_s=BACKOFF_FIRST_S, backoff_cap_s=config.backoff_cap_s)  # as the cameras'
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None  # messages were put
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()  # the loop and its events exist
        self._idle = True  # the pump waits for messages: submit() wakes it
        self._deadline = math.inf  # monotonic time by which close() must be done
        self._snapshots: dict[str, tuple[Path, float]] = {}  # topic → (crop file, monotonic deadline)
        self.connected = False
        self.error: BaseException | None = None  # the sink's thread died of it (a bug of ours)

    @property
    def available_topic(self) -> str:
        return f"{self._prefix}/available"

    def state(self) -> SinkState:
        if self.error is not None:
            problem: str | None = f"the MQTT sink failed: {self.error!r}"
        elif self.connected:
            problem = None
        else:
            problem = self._outbox.gap_reason or "connecting to the broker"
        outbox = self._outbox
        return SinkState(self.name, problem is None, problem, outbox.published, outbox.dropped, len(outbox))

    def start(self) -> MqttSink:
        self._thread.start()
        self._started.wait()
        return self

    def submit(self, batch: Iterable[Mapping[str, Any]]) -> None:
        """Queue the records this sink publishes (detections only with ``publish_detections``)."""
        items = [
            (topic_of(record, self._prefix), record, False)
            for record in batch
            if record.get("type") != "detections" or self._config.publish_detections
        ]
        if items:
            self._outbox.put(items, self._clock())
            if self._idle:
                self._poke(self._wake)

    def stats(self, summary: Mapping[str, Any]) -> None:
        """Publish ``summary`` (the ``/health`` JSON) to ``<prefix>/stats``."""
        self._outbox.put([(f"{self._prefix}/stats", summary, False)], self._clock())
        self._poke(self._wake)

    def close(self, timeout_s: float = 5.0) -> None:
        """Publish what waits (within ``timeout_s`` while connected), ``offline``, and disconnect;
        what is left is dropped, counted, and an ``mqtt_gap`` event says so in the files."""
        if not self._thread.is_alive():
            return
        self._deadline = time.monotonic() + timeout_s
        self._poke(self._stop)
        self._thread.join(timeout_s + CONNECT_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("the MQTT sink did not stop in time", timeout_s=timeout_s)

    def _poke(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if event is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to wake
                loop.call_soon_threadsafe(event.set)

    # The sink's thread.

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.connected = False
            log.error("the MQTT sink failed (a dalistream bug)", exc_info=exc)
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._started.set()
        snapshots = asyncio.create_task(self._snapshot_loop(), name="mqtt-snapshots")
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    async with self._client() as client:
                        attempt = 0
                        await self._session(client)
                        return  # stopped cleanly
                except aiomqtt.MqttError as exc:
                    self._lost(describe(exc, connected=self.connected))
                finally:
                    self.connected = False
                    self._outbox.requeue(self._clock())
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._backoff.backoff_s(attempt, random.random()))
        finally:
            snapshots.cancel()
            gap = self._outbox.drop_all(self._clock(), self._outbox.gap_reason or "the service stopped before they were sent")
            if gap is not None:
                self._gap_closed(gap, publish=False)

    def _client(self) -> aiomqtt.Client:
        host, port, tls = self._config.address
        context = None
        if tls:
            context = ssl.create_default_context(cafile=self._config.tls_ca_file or None)
            if not self._config.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        will = aiomqtt.Will(self.available_topic, b"offline", self._config.qos, retain=True) if self._availability else None
        client = aiomqtt.Client(
            host, port, username=self._config.username or None, password=self._password, identifier=self._client_id,
            will=will, keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S, tls_context=context,
            max_inflight_messages=IN_FLIGHT, max_queued_outgoing_messages=0,
        )
        client.pending_calls_threshold = IN_FLIGHT + 2  # IN_FLIGHT publishes awaiting their acks is the plan, not a warning
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: ``online``, the outage's gap, then publish until stopped (returns) or
        disconnected (raises :class:`aiomqtt.MqttError`)."""
        if self._availability:
            await client.publish(self.available_topic, b"online", self._config.qos, retain=True)
        self.connected = True
        log.info("mqtt connected", url=self._config.url, client_id=client.identifier)
        if (gap := self._outbox.connected(self._clock())) is not None:
            self._gap_closed(gap, publish=True)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a publish raised
        publishing: set[asyncio.Task[None]] = set()
        watch = asyncio.create_task(self._watch(client), name="mqtt-watch")
        pump = asyncio.create_task(self._pump(client, publishing, failed), name="mqtt-pump")
        stop = asyncio.create_task(self._stop.wait(), name="mqtt-stop")
        try:
            done, _ = await asyncio.wait([watch, stop, pump, failed], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                task.result()  # a lost connection raises MqttError
            while len(self._outbox) and time.monotonic() < self._deadline and not watch.done() and not failed.done():
                await asyncio.sleep(0.02)
            for task in (watch, failed):
                if task.done():
                    task.result()
        finally:
            tasks = [watch, pump, stop, *publishing]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not failed.done():
                failed.cancel()
        if self._availability:
            await client.publish(self.available_topic, b"offline", self._config.qos, retain=True)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Until the connection is lost: nothing is subscribed, so the iteration only ends then."""
        async for _ in client.messages:
            pass

    async def _pump(self, client: aiomqtt.Client, publishing: set[asyncio.Task[None]], failed: asyncio.Future[None]) -> None:
        """Take messages in order and publish each in a task of its own, ``IN_FLIGHT`` at most
        awaiting their acknowledgements (each hands its message to paho as it starts, in order)."""
        assert self._wake is not None
        room = asyncio.Semaphore(IN_FLIGHT)

        def finished(task: asyncio.Task[None]) -> None:
            publishing.discard(task)
            room.release()
            if not task.cancelled() and task.exception() is not None and not failed.done():
                failed.set_exception(task.exception())

        while True:
            message = self._outbox.take()
            if message is None:
                if (gap := self._outbox.settle(self._clock())) is not None:
                    self._gap_closed(gap, publish=True)
                    continue
                self._idle = True  # submit() wakes the pump only while it waits
                self._wake.clear()
                if (message := self._outbox.take()) is None:
                    await self._wake.wait()
                    self._idle = False
                    continue
                self._idle = False
            await room.acquire()
            task = asyncio.create_task(self._publish(client, message), name="mqtt-publish")
            publishing.add(task)
            task.add_done_callback(finished)

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        if (payload := self._payload(message)) is not None:
            await client.publish(message.topic, payload, self._config.qos, retain=message.retain, timeout=math.inf)
            self._outbox.done(message)

    def _payload(self, message: Message) -> bytes | None:
        body = message.body
        if isinstance(body, bytes):
            return body
        if isinstance(body, Path):  # a face snapshot
            try:
                return body.read_bytes()
            except OSError as exc:
                self._outbox.lose(message, self._clock(), f"face crop unreadable: {exc.strerror or exc}")
                log.warning("face snapshot not published: its crop is unreadable", crop=str(body), error=str(exc))
                if self._wake is not None:
                    self._wake.set()  # the pump settles the gap this opened once nothing waits
                return None
        if body.get("event") == "face_left" and body.get("crop"):
            self._snapshot(body)
        return json.dumps(body, separators=(",", ":")).encode()

    def _snapshot(self, event: Mapping[str, Any]) -> None:
        """Publish a ``face_left``'s crop once its file is on the disk (the crop writer has its
        own thread; it may not have written it yet)."""
        crop = Path(event["crop"])
        path = crop if crop.is_absolute() else self._output_dir / crop
        self._snapshots[f"{self._prefix}/{event['camera']}/face/snapshot"] = (path, time.monotonic() + SNAPSHOT_WAIT_S)

    async def _snapshot_loop(self) -> None:
        """Put each waiting snapshot in the outbox once its file is there (or its wait is over:
        then it is dropped, counted, as unreadable). A camera's snapshot superseded by a newer
        one before its file appeared is skipped: the retained topic holds only the latest."""
        while True:
            await asyncio.sleep(SNAPSHOT_POLL_S)
            now = time.monotonic()
            for topic, (path, deadline) in list(self._snapshots.items()):
                if path.is_file() or now > deadline:
                    del self._snapshots[topic]
                    self._outbox.put([(topic, path, True)], self._clock())
                    self._poke(self._wake)

    def _lost(self, reason: str) -> None:
        """A connection attempt failed or a connection died."""
        if self._outbox.disconnected(self._clock(), reason):
            log.warning("mqtt disconnected; retrying with backoff", url=self._config.url, reason=reason)
            event = records.event(camera=None, event="mqtt_disconnected", wallclock=self._clock(), reason=reason)
            self._emit([event])
            self._outbox.put([(topic_of(event, self._prefix), event, False)], self._clock())
        else:
            log.info("mqtt connection attempt failed", url=self._config.url, reason=reason)

    def _gap_closed(self, fields: dict[str, Any], *, publish: bool) -> None:
        event = records.event(camera=None, event="mqtt_gap", wallclock=self._clock(), **fields)
        (log.warning if fields["messages_dropped"] else log.info)("mqtt gap", **fields)
        self._emit([event])
        if publish:
            self._outbox.put([(topic_of(event, self._prefix), event, False)], self._clock(), first=True)
            self._poke(self._wake)


def mqtt_sink(config: MqttConfig | None, output_dir: Path, emit: Emit, **options: Any) -> MqttSink | None:
    """The sink ``[mqtt]`` describes, or None without one."""
    return None if config is None else MqttSink(config, output_dir, emit, **options)
