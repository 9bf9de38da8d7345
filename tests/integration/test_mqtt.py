"""The MQTT sink against a real broker (Debian's mosquitto, on free ports): every message a
subscriber receives is checked against the JSON lines of the same run, with TLS and a password,
a broker absent at start, killed, stopped beyond the buffer, a wrong password, and a topic
prefix the config refuses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from dalistream import records
from dalistream.config import MqttConfig
from dalistream.pipeline.runtime import Runtime
from dalistream.service.health import health
from dalistream.service.metrics import metrics_registry
from dalistream.sinks import mqtt as mqtt_module
from dalistream.sinks.mqtt import MqttSink
from conftest import require
from dalistream.tools.broker import MOSQUITTO, Mosquitto, Subscriber
from dalistream.tools.demo import demo_config

pytestmark = pytest.mark.integration

USER, PASSWORD = "dalistream", "Broker-s3cret!"
PASSWORD_ENV = "TEST_BROKER_PASSWORD"


@pytest.fixture(scope="module", autouse=True)
def mosquitto_installed() -> None:
    require(Path(MOSQUITTO).is_file() and shutil.which("openssl") is not None,
            "mosquitto or openssl missing: run scripts/setup.sh --test")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A plain broker for the module; a test that stops it starts it again."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """TLS and a password file."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto-tls"), user=(USER, PASSWORD), tls=True) as broker:
        yield broker


def lines_in(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()]


def expected_messages(lines: list[dict[str, Any]], *, detections: bool) -> list[tuple[str, str]]:
    """(topic, canonical JSON) of every record of the files the sink publishes: events and, when
    enabled, detections."""
    out = []
    for record in lines:
        if record["type"] == "detections" and not detections:
            continue
        kind = "events" if record["type"] == "event" else "detections"
        topic = f"dalistream/{kind}" if record["camera"] is None else f"dalistream/{record['camera']}/{kind}"
        out.append((topic, json.dumps(record, sort_keys=True)))
    return out


def received_messages(subscriber: Subscriber) -> list[tuple[str, str]]:
    return [(topic, json.dumps(json.loads(payload), sort_keys=True)) for topic, payload, _ in subscriber.received()
            if payload[:1] == b"{" and not topic.endswith("/stats")]


def sample_config(clip: Path, out: Path, **mqtt: Any):
    config = demo_config([clip.as_uri()], out, camera={"loop": True})
    return dataclasses.replace(config, mqtt=MqttConfig(**mqtt))


async def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def mqtt_state(runtime: Runtime):
    (state,) = [state for state in runtime.sink_states() if state.name == "mqtt"]
    return state


def test_every_record_reaches_a_subscriber_over_tls_with_a_password(secure_broker, sample_clip, model_path, tmp_path):
    subscriber = Subscriber(secure_broker, user=(USER, PASSWORD), name="tls-checker")
    site = tmp_path / "site.toml"
    site.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\n[output]\ndir = "{tmp_path / "out"}"\n'
        f'[mqtt]\nurl = "{secure_broker.url}"\ntls_ca_file = "{secure_broker.cert}"\nusername = "{USER}"\n'
        f'password_env = "{PASSWORD_ENV}"\npublish_detections = true\nstats_interval_s = 1.0\n'
        f'[[camera]]\nid = "cam0"\nurl = "{sample_clip.as_uri()}"\nloop = true\n'
    )
    done = subprocess.run([sys.executable, "-m", "dalistream", "--config", str(site), "--duration", "8", "--log-level", "debug"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, PASSWORD_ENV: PASSWORD})
    assert done.returncode == 0, done.stderr
    lines = lines_in(tmp_path / "out")
    expected = expected_messages(lines, detections=True)
    assert sum(topic.endswith("/detections") for topic, _ in expected) >= 10
    assert subscriber.wait_for(lambda got: ("dalistream/available", b"offline", False) in got)
    subscriber.close()
    received = received_messages(subscriber)
    assert set(received) == set(expected) and len(set(received)) == len(expected)  # each record once, none other
    available = [payload for topic, payload, _ in subscriber.received() if topic == "dalistream/available"]
    assert available == [b"online", b"offline"]
    stats = [json.loads(payload) for topic, payload, _ in subscriber.received() if topic == "dalistream/stats"]
    assert len(stats) >= 2 and {"status", "cameras", "sinks"} <= set(stats[-1])
    assert [sink["state"] for sink in stats[-1]["sinks"] if sink["name"] == "mqtt"] == ["up"]
    everything = done.stderr + "".join(path.read_text() for path in (tmp_path / "out").glob("*.jsonl"))
    assert PASSWORD not in everything and not any(PASSWORD.encode() in payload for _, payload, _ in subscriber.received())


def test_a_wrong_password_is_a_clear_reason_retried_with_backoff_and_never_said(secure_broker, sample_clip, model_path, tmp_path):
    wrong = "Wrong-pa55word?"
    site = tmp_path / "site.toml"
    site.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\n[output]\ndir = "{tmp_path / "out"}"\n'
        f'[mqtt]\nurl = "{secure_broker.url}"\ntls_ca_file = "{secure_broker.cert}"\nusername = "{USER}"\n'
        f'password_env = "{PASSWORD_ENV}"\n'
        f'[[camera]]\nid = "cam0"\nurl = "{sample_clip.as_uri()}"\nloop = true\n'
    )
    done = subprocess.run([sys.executable, "-m", "dalistream", "--config", str(site), "--duration", "8", "--log-level", "debug"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, PASSWORD_ENV: wrong})
    assert done.returncode == 0, done.stderr  # the files are whole: the broker's refusal is the sink's, said and counted
    lines = lines_in(tmp_path / "out")
    assert sum(line["type"] == "detections" for line in lines) >= 10
    (disconnected,) = [line for line in lines if line.get("event") == "mqtt_disconnected"]
    assert disconnected["reason"] == "the broker refused the connection: [code:135] Not authorized", disconnected
    (gap,) = [line for line in lines if line.get("event") == "mqtt_gap"]
    assert gap["messages_dropped"] >= 2 and gap["reason"] == disconnected["reason"]  # the events never sent, counted
    attempts = done.stderr.count("mqtt disconnected; retrying") + done.stderr.count("mqtt connection attempt failed")
    assert 2 <= attempts <= 7, done.stderr  # 0.5, 1, 2, 4 s… apart: a few in the seconds the sink ran, not a storm
    everything = done.stderr + "".join(path.read_text() for path in (tmp_path / "out").glob("*.jsonl"))
    assert wrong not in everything and PASSWORD not in everything and "Traceback" not in done.stderr


def test_a_broker_absent_at_start_then_killed_loses_nothing(broker, sample_clip, model_path, tmp_path):
    subscriber = Subscriber(broker, name="absent-checker")  # its session outlives the broker's restarts
    broker.stop()
    out = tmp_path / "out"
    runtime = Runtime(sample_config(sample_clip, out, url=broker.url, publish_detections=True))
    registry = metrics_registry(runtime)
    seen: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(runtime.run(stop))
        await until(lambda: runtime.ready and runtime.records_written >= 10)
        seen["health"] = health(runtime)
        seen["metrics"] = generate_latest(registry).decode()
        await asyncio.to_thread(broker.start)
        await until(lambda: mqtt_state(runtime).up)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(broker.stop, signal.SIGKILL)
        seen["killed"] = time.time()
        await asyncio.sleep(2.0)
        await asyncio.to_thread(broker.start)
        await until(lambda: mqtt_state(runtime).up)
        await asyncio.sleep(1.5)
        stop.set()
        await running

    asyncio.run(main())
    assert seen["health"]["status"] == "degraded"
    (sink,) = [sink for sink in seen["health"]["sinks"] if sink["name"] == "mqtt"]
    assert sink["state"] == "down" and sink["problem"] == "cannot connect: [Errno 111] Connection refused", sink
    assert "dalistream_mqtt_connected 0.0" in seen["metrics"] and "dalistream_mqtt_messages_queued " in seen["metrics"]
    lines = lines_in(out)
    gaps = [line for line in lines if line.get("event") == "mqtt_gap"]
    assert [gap["messages_dropped"] for gap in gaps] == [0, 0], gaps
    assert gaps[1]["reason"].startswith("connection lost"), gaps
    expected = expected_messages(lines, detections=True)
    assert subscriber.wait_for(lambda _: set(received_messages(subscriber)) >= set(expected), 10)
    subscriber.close()
    assert set(received_messages(subscriber)) == set(expected)  # QoS 1 may repeat one: at least once, never lost
    during_outage = [line for line in lines if line["type"] == "detections" and line["wallclock"] > records.iso_utc(seen["killed"] + 0.5)
                     and line["wallclock"] < gaps[1]["to"]]
    assert len(during_outage) >= 5  # held in the buffer while the broker was dead, delivered after
    final = generate_latest(registry).decode()
    assert "dalistream_mqtt_messages_dropped_total 0.0" in final
    assert f"dalistream_mqtt_messages_published_total {float(mqtt_state(runtime).sent)}" in final


def test_beyond_the_buffer_the_oldest_are_dropped_counted_and_said(broker, sample_clip, model_path, tmp_path):
    subscriber = Subscriber(broker, name="overflow-checker")
    out = tmp_path / "out"
    runtime = Runtime(sample_config(sample_clip, out, url=broker.url, publish_detections=True, buffer_messages=4))

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(runtime.run(stop))
        await until(lambda: runtime.ready and mqtt_state(runtime).sent >= 5)
        await asyncio.to_thread(broker.stop)  # a clean stop: the broker keeps what it acknowledged
        await asyncio.sleep(3.0)
        await asyncio.to_thread(broker.start)
        await until(lambda: mqtt_state(runtime).up)
        await asyncio.sleep(1.5)
        stop.set()
        await running

    asyncio.run(main())
    lines = lines_in(out)
    gaps = [line for line in lines if line.get("event") == "mqtt_gap"]  # a burst can fill 4 messages while connected too
    (gap,) = [line for line in gaps if line["reason"].startswith("connection lost")]
    assert gap["messages_dropped"] >= 5, gap
    expected = expected_messages(lines, detections=True)
    subscriber.wait_for(lambda _: any('"mqtt_gap"' in m for _, m in received_messages(subscriber)))
    time.sleep(1.0)
    subscriber.close()
    received = set(received_messages(subscriber))
    assert received <= set(expected)
    missing = [json.loads(message) for _, message in set(expected) - received]
    assert len(missing) == sum(line["messages_dropped"] for line in gaps) == mqtt_state(runtime).dropped
    kept = [json.loads(message) for _, message in received]
    outage_kept = [record for record in kept if gap["from"] <= record["wallclock"] <= gap["to"]]
    outage_missing = [record for record in missing if record["wallclock"] <= gap["to"] and record.get("event") != "mqtt_gap"]
    assert max(record["wallclock"] for record in outage_missing) <= min(record["wallclock"] for record in outage_kept)  # the oldest went


def test_a_face_left_crop_is_the_retained_snapshot(broker, tmp_path, monkeypatch):
    monkeypatch.setattr(mqtt_module, "SNAPSHOT_WAIT_S", 1.0)
    emitted: list[dict[str, Any]] = []
    sink = MqttSink(MqttConfig(url=broker.url), tmp_path, emitted.extend).start()
    crop = tmp_path / "faces" / "cam0" / "2026-12-04" / "7.jpg"
    jpeg = b"\xff\xd8\xff\xe0 a face \xff\xd9"
    now = time.time()
    sink.submit([
        records.event(camera="cam0", event="face_left", wallclock=now, track=7, crop="faces/cam0/2026-12-04/7.jpg"),
        records.event(camera="cam1", event="face_left", wallclock=now, track=1, crop=str(tmp_path / "never.jpg")),
    ])
    time.sleep(0.5)
    crop.parent.mkdir(parents=True)
    crop.write_bytes(jpeg)  # the crop writer's file appears after the event was sent
    deadline = time.monotonic() + 5
    while sink.state().dropped < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    late = Subscriber(broker, "dalistream/+/face/snapshot", name="late-snapshot-reader")  # retained: a newcomer gets it
    assert late.wait_for(lambda got: got)
    late.close()
    sink.close(2.0)
    assert late.received() == [("dalistream/cam0/face/snapshot", jpeg, True)]
    state = sink.state()
    assert (state.sent, state.dropped) == (4, 1)  # two events, one snapshot, the mqtt_gap of the missing crop (counted)
    (gap,) = [event for event in emitted if event["event"] == "mqtt_gap"]
    assert gap["messages_dropped"] == 1 and "face crop unreadable" in gap["reason"]


@pytest.mark.parametrize("prefix", ["site/+", "site/#"])
def test_a_wildcard_topic_prefix_stops_check_and_start(prefix, model_path, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(f'[model]\nonnx = "{model_path}"\n[mqtt]\ntopic_prefix = "{prefix}"\n[[camera]]\nid = "a"\nurl = "rtsp://127.0.0.1:9/x"\n')
    for command in (["check", str(site)], ["--config", str(site), "--duration", "1"]):
        done = subprocess.run([sys.executable, "-m", "dalistream", *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "mqtt.topic_prefix: must not hold" in done.stderr and "Traceback" not in done.stderr
