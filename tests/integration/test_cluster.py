"""Cluster mode on a real local Ray cluster of several nodes, CPU workers, the real GStreamer
server: six cameras over three workers; a worker process killed, then a node removed; their
cameras analyse again on the others; their records, gathered into the coordinator's files,
keep each camera's seq growing across the moves; a camera added over REST lands on the worker
with the most room."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import require_module
from net import free_port, get_json as get

pytestmark = pytest.mark.integration

RECOVERY_S = 15.0  # the bound: a lost worker's cameras analyse again within this




def post(base: str, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the coordinator exited ({process.returncode}): {log.read_text()[-4000:]}"
        try:
            if result := condition():
                return result
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-4000:]}")


def timestamp(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["wallclock"].replace("Z", "+00:00")).timestamp()


@pytest.fixture
def ray_cluster():
    ray_cluster_utils = require_module("ray.cluster_utils", "run scripts/setup.sh")
    cluster = ray_cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(3)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


def test_six_cameras_on_three_workers_survive_a_killed_worker_and_a_lost_node(rtsp_server, model_path: Path, tmp_path: Path, ray_cluster):
    cluster, nodes = ray_cluster
    server = rtsp_server(7)
    port = free_port()
    cameras = "".join(f'[[camera]]\nid = "cam{i}"\nurl = "{server.url(i)}"\ntransport = "tcp"\n' for i in range(6))
    site = tmp_path / "site.toml"
    site.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\ninput = [640, 384]\n[output]\ndir = "out"\nprefix = "site"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[cluster]\naddress = "{cluster.address}"\ncpu_workers = 3\nworker_cpus = 2.0\nhealth_timeout_s = 3.0\ngather_output = true\n'
        + cameras
    )
    log = tmp_path / "coordinator.log"
    env = {**os.environ, "DALISTREAM_CACHE": str(tmp_path / "cache")}  # the shipped costs, whatever bench measured here
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dalistream", "--config", str(site)],
                                   stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        def streaming_everywhere() -> dict[str, Any] | None:
            health = get(base, "/health")
            ready = [w for w in health.get("workers", []) if w["state"] == "ready"]
            live = all(c["state"] == "streaming" and c["analysed"] > 0 for c in health["cameras"])
            return health if len(ready) == 3 and live and len(health["cameras"]) == 6 else None

        health = wait_for(streaming_everywhere, 180, "6 cameras streaming on 3 workers", process, log)
        placed = {w["id"]: w["cameras"] for w in health["workers"]}
        assert sorted(c for cams in placed.values() for c in cams) == [f"cam{i}" for i in range(6)]
        # Placed as workers became ready: the first took all six at once (1.2 of its 1.6 cores).
        assert sorted(len(cams) for cams in placed.values()) == [0, 0, 6], placed
        assert len({w["pid"] for w in health["workers"]}) == 3 and len({w["node"] for w in health["workers"]}) == 3

        def recovered(lost_worker: str, cameras: list[str]) -> dict[str, Any] | None:
            health = get(base, "/health")
            moved = {c["id"]: c for c in health["cameras"] if c["id"] in cameras}
            ok = all(c.get("worker") not in (None, lost_worker) and c["analysed"] > 0 and c["last_frame_age_s"] < 1.0
                     for c in moved.values())
            return health if ok else None

        # 1. A worker process dies (SIGKILL): its cameras analyse again on the others, by capacity.
        killed = next(w for w in health["workers"] if w["cameras"])
        os.kill(killed["pid"], signal.SIGKILL)
        started = time.monotonic()
        health = wait_for(lambda: recovered(killed["id"], killed["cameras"]), 60, "the killed worker's cameras back", process, log)
        kill_recovery_s = time.monotonic() - started
        recovered_at = time.time()
        assert kill_recovery_s < RECOVERY_S, kill_recovery_s
        assert killed["id"] not in {w["id"] for w in health["workers"]}
        survivors = {w["id"]: w["cameras"] for w in health["workers"] if w["cameras"]}
        assert sorted(len(cams) for cams in survivors.values()) == [3, 3], survivors  # equal workers: 3 each

        # The killed worker's node has its core free again: a new worker starts there.
        def three_ready() -> dict[str, Any] | None:
            health = get(base, "/health")
            return health if sum(w["state"] == "ready" for w in health["workers"]) == 3 else None

        health = wait_for(three_ready, 120, "a replacement worker", process, log)

        # 2. A node goes (its raylet and processes): the same.
        gone = next(w for w in health["workers"] if w["cameras"] and w["id"] != killed["id"])
        node = next(n for n in nodes if n.node_id == gone["node"])
        cluster.remove_node(node, allow_graceful=False)
        started = time.monotonic()
        health = wait_for(lambda: recovered(gone["id"], gone["cameras"]), 60, "the lost node's cameras back", process, log)
        node_recovery_s = time.monotonic() - started
        assert node_recovery_s < RECOVERY_S, node_recovery_s

        # 3. A camera added over REST goes to the worker with the most room.
        workers = {w["id"]: w for w in get(base, "/health")["workers"] if w["state"] == "ready"}
        roomiest = min(workers.values(), key=lambda w: (w["load_cores"] / w["capacity_cores"], w["id"]))["id"]
        status, added = post(base, "/api/v1/cameras", {"id": "cam6", "url": server.url(6), "transport": "tcp"})
        assert status == 201, added
        assert added["worker"] == roomiest, (added, workers)
        wait_for(lambda: get(base, "/api/v1/cameras/cam6")["analysed"] > 0, 60, "cam6 analysed", process, log)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert 'dalistream_camera_frames_analysed_total{camera="cam6",worker="' + roomiest + '"}' in metrics
        assert "dalistream_cluster_workers " in metrics
        with urllib.request.urlopen(base + "/cameras/cam6/latest.jpg", timeout=10) as response:  # from its worker
            assert response.headers["Content-Type"] == "image/jpeg" and response.read(3) == b"\xff\xd8\xff"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0, log.read_text()[-4000:]

    files = sorted((tmp_path / "out").glob("*.jsonl"))
    assert {f.name.split("-")[1] for f in files} == {"coordinator"}  # gathered: the workers wrote none
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    service = [line for line in lines if line["camera"] is None]
    assert [line["event"] for line in service].count("worker_lost") == 2
    assert service[-1]["event"] == "stopped" and "worker" not in service[-1]  # the coordinator's own, last
    assert {line["worker"] for line in service[:-1] if line["event"] == "stopped"} == set(workers)  # each ready worker's, gathered
    for camera in [f"cam{i}" for i in range(7)]:
        seqs = [line["seq"] for line in lines if line["camera"] == camera and line["type"] == "detections"]  # as written
        assert seqs and all(b > a for a, b in zip(seqs, seqs[1:])), (camera, seqs)
    for lost in (killed, gone):
        for camera in lost["cameras"]:
            moved = [line for line in lines if line["camera"] == camera and line.get("event") == "moved"]
            assert any(m["from"] == lost["id"] and m["to"] != lost["id"] for m in moved), moved
            # Its face tracks' ids go on past the lost worker's (never one used twice).
            at = timestamp(next(m for m in moved if m["from"] == lost["id"]))
            tracks = [(timestamp(line), face["track"]) for line in lines if line["camera"] == camera and line["type"] == "detections"
                      for face in line["faces"] if face["track"] is not None]
            before, after = {t for when, t in tracks if when < at}, {t for when, t in tracks if when >= at}
            assert before and after and min(after) > max(before), (camera, sorted(before), sorted(after))
    # Nothing else paused: cameras on the worker that lived through both failures were never
    # restarted or moved once they had moved there, and kept being analysed. (Here three workers,
    # the server and Ray share two cores, and a replacement worker loading its model takes most
    # of them: gaps of up to 3.8 s between two analysed frames were seen then, at load average
    # ~6; 5 s is the bound.)
    steady = [c for w, cams in survivors.items() if w != gone["id"] for c in cams]
    assert len(steady) == 3
    for camera in steady:
        later = [line for line in lines if line["camera"] == camera and timestamp(line) > recovered_at]
        events = [line["event"] for line in later if line["type"] == "event"]
        assert not {"connected", "moved", "disconnected"} & set(events), (camera, events)
        times = [timestamp(line) for line in later if line["type"] == "detections"]
        assert max(b - a for a, b in zip(times, times[1:])) < 5.0, camera
    print(f"recovery: killed worker {kill_recovery_s:.1f} s, lost node {node_recovery_s:.1f} s")
