"""CPU the MQTT sink costs per thousand messages, against a local mosquitto.

Feeds the sink detections records (one face each, like the sample clip's) as the runtime does,
one record per submit: paced as ``--cameras`` cameras at ``--fps`` for ``--seconds``, then
``--burst`` records at once (a backlog after an outage). CPU is counted per thread: the sink's
own thread (aiomqtt/paho, JSON encoding) from /proc, the submitting thread's time inside
``submit``; the broker's CPU is given apart (it is not ours).

    .venv/bin/python scripts/mqtt_cost.py [--cameras 8] [--fps 5] [--seconds 60] [--burst 20000] [--qos 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from dalistream import records
from dalistream.config import MqttConfig
from dalistream.sinks.mqtt import MqttSink
from dalistream.tools.broker import Mosquitto, Subscriber

TICK_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def record(camera: int, seq: int) -> dict:
    return {
        "v": 1, "type": "detections", "camera": f"cam{camera}", "seq": seq, "pts": round(seq / 5, 6),
        "wallclock": records.iso_utc(time.time()), "width": 1920, "height": 1080, "latency_ms": 112.35,
        "faces": [{"box": [812.0, 233.5, 906.9, 352.8], "score": 0.9991,
                   "landmarks": [[838.1, 280.2], [879.0, 279.6], [859.4, 303.0], [842.0, 325.7], [875.9, 325.1]]}],
    }


def measure(sink: MqttSink, broker: Mosquitto, feed, count: int) -> dict:
    """Run ``feed`` (it submits ``count`` records); CPU of each part until all are published."""
    sink_thread = next(t for t in threading.enumerate() if t.name == "mqtt")
    start_sent = sink.state().sent
    sink0, broker0, wall0 = cpu_s(os.getpid(), sink_thread.native_id), cpu_s(broker.pid), time.perf_counter()
    submit_s = feed()
    while sink.state().sent - start_sent < count:
        time.sleep(0.01)
    wall = time.perf_counter() - wall0
    sink_s, broker_s = cpu_s(os.getpid(), sink_thread.native_id) - sink0, cpu_s(broker.pid) - broker0
    per_1000 = 1000 / count
    return {
        "messages": count, "seconds": round(wall, 2),
        "sink_thread_cpu_ms_per_1000": round(sink_s * 1e3 * per_1000, 1),
        "submit_cpu_ms_per_1000": round(submit_s * 1e3 * per_1000, 2),
        "broker_cpu_ms_per_1000": round(broker_s * 1e3 * per_1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--qos", type=int, default=1, choices=[0, 1])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mqtt-cost-"))
    with Mosquitto(folder) as broker:
        subscriber = Subscriber(broker, "dalistream/+/detections", name="cost-subscriber")
        sink = MqttSink(MqttConfig(url=broker.url, qos=args.qos, publish_detections=True, buffer_messages=max(args.burst, 10_000)),
                        folder, lambda _: None).start()
        while not sink.state().up:
            time.sleep(0.01)
        paced_count = int(args.cameras * args.fps * args.seconds)

        def paced() -> float:
            spent, interval, start = 0.0, 1 / (args.cameras * args.fps), time.perf_counter()
            for i in range(paced_count):
                time.sleep(max(0.0, start + i * interval - time.perf_counter()))
                t = time.thread_time()
                sink.submit([record(i % args.cameras, i // args.cameras)])
                spent += time.thread_time() - t
            return spent

        def burst() -> float:
            batch = [record(i % args.cameras, i) for i in range(args.burst)]
            t = time.thread_time()
            for item in batch:
                sink.submit([item])
            return time.thread_time() - t

        report = {"qos": args.qos, "cameras": args.cameras, "fps": args.fps,
                  "paced": measure(sink, broker, paced, paced_count), "burst": measure(sink, broker, burst, args.burst)}
        sink.close(10.0)
        time.sleep(0.5)
        subscriber.close()
        report["received"] = len(subscriber.received())
        report["published"] = sink.state().sent
        rate = args.cameras * args.fps
        per_1000 = report["paced"]["sink_thread_cpu_ms_per_1000"] + report["paced"]["submit_cpu_ms_per_1000"]
        report["paced"]["core_share_percent"] = round(per_1000 * rate / 1000 / 10, 3)  # ms per s → % of one core
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
