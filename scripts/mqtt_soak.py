"""The MQTT sink through broker restarts: the service runs in-process on clip cameras with
``publish_detections`` (QoS 1) against a local mosquitto that is killed (SIGKILL; ``--stop``:
SIGTERM) and started again ``--restarts`` times, evenly spread; a subscriber on a persistent
session receives everything; then every record of the files the sink publishes is looked for
among what it received.

    .venv/bin/python scripts/mqtt_soak.py [--minutes 10] [--restarts 5] [--down 5] [--cameras 2] [--json]

Reports messages expected (from the files), published (acknowledged by the broker), received
(distinct) and their duplicates, missing and dropped, and per restart: how long the broker was
down, how long the sink took to reconnect once it was up, the sink's ``mqtt_gap`` (its length,
messages dropped) and how many records it held through the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dalistream.pipeline.runtime import Runtime
from dalistream.tools.broker import Mosquitto, Subscriber
from dalistream.tools.demo import SAMPLE_CLIP, demo_config


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def topic_of(record: dict[str, Any]) -> str:
    kind = "events" if record["type"] == "event" else "detections"
    return f"dalistream/{kind}" if record["camera"] is None else f"dalistream/{record['camera']}/{kind}"


def mqtt_up(runtime: Runtime) -> bool:
    return any(state.name == "mqtt" and state.up for state in runtime.sink_states())


async def soak(runtime: Runtime, broker: Mosquitto, args: argparse.Namespace) -> list[dict[str, float]]:
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    total_s = args.minutes * 60
    restarts = []
    start = time.monotonic()
    for k in range(1, args.restarts + 1):
        await asyncio.sleep(max(0.0, start + k * total_s / (args.restarts + 1) - time.monotonic()))
        down = time.time()
        await asyncio.to_thread(broker.stop, signal.SIGTERM if args.stop else signal.SIGKILL)
        await asyncio.sleep(args.down)
        up = time.time()
        await asyncio.to_thread(broker.start)
        while not mqtt_up(runtime):
            await asyncio.sleep(0.01)
        restarts.append({"down_at": down, "up_at": up, "reconnected_at": time.time()})
        print(f"restart {k}: down {up - down:.1f} s, reconnected {time.time() - up:.2f} s after", flush=True)
    await asyncio.sleep(max(0.0, start + total_s - time.monotonic()))
    stop.set()
    await running
    return restarts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--down", type=float, default=5.0, help="seconds the broker stays down each time")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--input", default="640x384", help="model input WxH")
    parser.add_argument("--stop", action="store_true", help="stop the broker with SIGTERM instead of killing it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mqtt-soak-"))
    width, height = (int(v) for v in args.input.split("x"))
    with Mosquitto(folder / "broker") as broker:
        subscriber = Subscriber(broker, "dalistream/#", name="soak-subscriber")
        config = demo_config([SAMPLE_CLIP.as_uri()] * args.cameras, folder / "out", camera={"loop": True},
                             model={"input": [width, height]}, tables={"mqtt": {"url": broker.url, "publish_detections": True}})
        runtime = Runtime(config)
        restarts = asyncio.run(soak(runtime, broker, args))
        lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
        expected = {(topic_of(r), json.dumps(r, sort_keys=True)) for r in lines}

        def received() -> list[tuple[str, str]]:
            return [(topic, json.dumps(json.loads(payload), sort_keys=True))
                    for topic, payload, _ in subscriber.received() if payload[:1] == b"{"]

        subscriber.wait_for(lambda _: set(received()) >= expected, 15.0)
        subscriber.close()
    got = received()
    (sink,) = [state for state in runtime.sink_states() if state.name == "mqtt"]
    gaps = [line for line in lines if line.get("event") == "mqtt_gap"]
    for restart, gap in zip(restarts, gaps):
        start, end = epoch(gap["from"]), epoch(gap["to"])
        restart.update(gap_s=round(end - start, 2), messages_dropped=gap["messages_dropped"],
                       held=sum(1 for line in lines if line["type"] == "detections" and start <= epoch(line["wallclock"]) <= end))
    report = {
        "minutes": args.minutes, "cameras": args.cameras, "broker": "SIGTERM" if args.stop else "SIGKILL",
        "expected": len(expected), "published": sink.sent, "received": len(set(got)), "duplicates": len(got) - len(set(got)),
        "missing": len(expected - set(got)), "unexpected": len(set(got) - expected), "dropped": sink.dropped,
        "detections": sum(1 for line in lines if line["type"] == "detections"), "mqtt_gaps": len(gaps),
        "restarts": [{"down_s": round(r["up_at"] - r["down_at"], 2), "reconnect_s": round(r["reconnected_at"] - r["up_at"], 2),
                      **{k: r[k] for k in ("gap_s", "messages_dropped", "held") if k in r}} for r in restarts],
    }
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
