"""Cluster mode on a real Ray cluster started as a user starts one, `ray start --head` on
127.0.0.1 with a token in ~/.ray/auth_token (Ray then turns token authentication on), the
coordinator joining with nothing exported by hand:

- a wrong token, no token, nothing listening and a Ray version mismatch each stop it with one
  line and exit 2, before any camera is contacted;
- `check` compares the Ray resources the config asks for with what the cluster offers;
- more workers than fit: the one that fits analyses at once, the others are `pending` with the
  reason in /health, a second node (`ray start --address`) lets one start and take the camera
  that had no room; that worker killed, its camera waits for room and resumes as a `moved`
  camera, seq continued; SIGTERM while a worker is still pending stops it in under 10 s.

One head serves the module; each Ray process runs in a temp dir and on ports of its own, and
only the processes these tests started are stopped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from net import free_port, get_json as get

from conftest import require

pytestmark = pytest.mark.integration

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
START_S = 90.0  # a Ray node's start on these two shared cores
FIRST_FRAME_S = 60.0  # coordinator start → the first analysed frame on the worker that fits (measured 9–14 s)
STOP_S = 10.0  # SIGTERM → exit, whatever the workers are doing




class RayNode:
    """`ray start --block` (head or not) in a temp dir of its own, every port its own; stopped
    by SIGTERM to that one process, which stops the node's processes."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="ds-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        command = [*RAY, "start", "--block", "--disable-usage-stats", "--temp-dir", self.temp_dir, *args]
        command += [arg for port in ports for arg in (port, str(free_port()))]
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_S
        while "Ray runtime started" not in log.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the cluster's token where Ray's CLI puts it (`ray get-auth-token --generate`)."""
    require(importlib.util.find_spec("ray") is not None, "Ray missing: run scripts/setup.sh")
    home = tmp_path_factory.mktemp("home")
    subprocess.run([*RAY, "get-auth-token", "--generate"], env={**os.environ, "HOME": str(home)}, check=True,
                   capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").read_text().strip()
    return home


@pytest.fixture(scope="module")
def ray_head(ray_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A head of 1 logical CPU on 127.0.0.1: its address, and the environment of a user on it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")} | {"HOME": str(ray_home)}
    port = free_port()
    head = RayNode(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                    "--include-dashboard", "false", "--dashboard-port", str(free_port())],
                   env, tmp_path_factory.mktemp("head") / "head.log")
    assert "Token authentication is enabled" in head.log.read_text()
    yield f"127.0.0.1:{port}", env
    head.stop()


def site(path: Path, address: str, cameras: list[str], *, workers: int, extra: str = "") -> Path:
    model = Path(__file__).resolve().parents[2] / "engines" / "retinaface_mnet025.onnx"
    path.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model}"\ninput = [640, 384]\n[output]\ndir = "out"\nprefix = "site"\n{extra}'
        f'[cluster]\naddress = "{address}"\ncpu_workers = {workers}\nworker_cpus = 0.6\n'
        + "".join(f'[[camera]]\nid = "cam{i}"\nurl = "{url}"\ntransport = "tcp"\n' for i, url in enumerate(cameras)))
    return path


def dalistream(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dalistream", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_a_failed_join_is_one_line_and_exit_2_before_any_camera_is_contacted(ray_head, model_path: Path, tmp_path: Path):
    address, env = ray_head
    env = env | {"DALISTREAM_CACHE": str(tmp_path / "cache")}
    with socket.create_server(("127.0.0.1", 0)) as camera:  # a camera that would see any connection
        url = f"rtsp://127.0.0.1:{camera.getsockname()[1]}/stream"
        config = site(tmp_path / "site.toml", address, [url], workers=1)
        nowhere = site(tmp_path / "nowhere.toml", f"127.0.0.1:{free_port()}", [url], workers=1)
        empty_home = tmp_path / "empty-home"
        empty_home.mkdir()
        cases = [
            (config, {"RAY_AUTH_TOKEN": "not-the-cluster-token"}, "it refused this machine's token"),
            (config, {"HOME": str(empty_home)}, "it wants a token and this machine has none"),
            (nowhere, {}, "nothing listens there"),
        ]
        for path, overrides, expected in cases:
            started = time.monotonic()
            result = dalistream(["--config", str(path)], env | overrides, tmp_path)
            took = time.monotonic() - started
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1, (overrides, result.stderr)
            assert expected in lines[0] and "Traceback" not in result.stderr, lines[0]
            assert "RAY_AUTH_TOKEN" in lines[0] or expected == "nothing listens there", lines[0]
            assert took < 15, (overrides, took)

        # A head of another Ray version (its recorded versions changed, as an older head wrote them).
        change = ("import json, sys; from ray._raylet import GcsClient; from ray._common.usage import usage_constants as usage_constant;"
                  "from ray._private import ray_constants; c = GcsClient(address=sys.argv[1]);"
                  "key, ns = usage_constant.CLUSTER_METADATA_KEY, ray_constants.KV_NAMESPACE_CLUSTER;"
                  "m = json.loads(c.internal_kv_get(key, namespace=ns)); old = m['ray_version'];"
                  "m['ray_version'] = sys.argv[2] or m['ray_version']; c.internal_kv_put(key, json.dumps(m).encode(), True, namespace=ns);"
                  "print(old)")
        token_env = env | {"RAY_AUTH_MODE": "token"}
        ours = subprocess.run([sys.executable, "-c", change, address, "2.0.0"], env=token_env, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()
        try:
            result = dalistream(["--config", str(config)], env, tmp_path)
        finally:
            subprocess.run([sys.executable, "-c", change, address, ours], env=token_env, check=True, capture_output=True, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "Version mismatch: The cluster was started with: Ray: 2.0.0" in lines[0] and f"Ray: {ours}" in lines[0], lines[0]

        camera.settimeout(0.5)
        with pytest.raises(TimeoutError):
            camera.accept()  # nobody ever connected


def test_check_compares_what_the_workers_ask_with_what_the_cluster_offers(ray_head, model_path: Path, tmp_path: Path):
    address, env = ray_head
    config = site(tmp_path / "site.toml", address, ["rtsp://127.0.0.1:1/a", "rtsp://127.0.0.1:1/b", "rtsp://127.0.0.1:1/c"], workers=3)
    result = dalistream(["check", str(config)], env | {"DALISTREAM_CACHE": str(tmp_path / "cache")}, tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["cluster_plan"]
    assert plan["asked"] == {"CPU": 1.8, "workers": 3}
    assert plan["offered"] == {"CPU": 1.0, "CPU_free": 1.0, "nodes": 1}
    w1, w2, w3 = plan["workers"]
    assert w1["verdict"] == "fits" and w1["cameras"] == ["cam0", "cam1"] and w1["capacity_cores"] == 0.48  # 80 % of 0.6
    assert w2 == {"id": "w2", "resources": {"CPU": 0.6}, "verdict": "pending",
                  "reason": "w2 needs 0.6 CPU; the cluster has 1.0 CPU, 0.6 taken by w1"}
    assert w3["verdict"] == "pending" and plan["cameras_without_room"] == ["cam2"] and plan["verdict"] == "does not fit"
    assert "cluster plan" in result.stderr and "3 workers ask 1.8 CPU" in result.stderr


def test_more_workers_than_fit_start_as_room_appears_and_sigterm_stops_at_once(rtsp_server, ray_head, model_path: Path, tmp_path: Path):
    address, env = ray_head
    server = rtsp_server(3)
    port = free_port()
    config = site(tmp_path / "site.toml", address, [server.url(i) for i in range(3)], workers=3,
                  extra=f'[http]\nlisten = "127.0.0.1:{port}"\n')
    log = tmp_path / "coordinator.log"
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dalistream", "--config", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=stderr, cwd=tmp_path, env=env | {"DALISTREAM_CACHE": str(tmp_path / "cache")})
    node = None

    def until(condition, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the coordinator exited ({process.returncode}): {log.read_text()[-4000:]}"
            try:
                if result := condition(get(base, "/health")):
                    return result
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-4000:]}")

    def workers(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {worker["id"]: worker for worker in health["workers"]}

    try:
        # One worker of 0.6 CPU fits on the head's 1 CPU: it analyses its two cameras (its
        # capacity) without waiting for the two Ray cannot place, which say why.
        def first_analysed(health: dict[str, Any]) -> dict[str, Any] | None:
            analysing = [c for c in health["cameras"] if c["analysed"] > 0]
            pending = [w for w in health["workers"] if w["state"] == "pending"]
            return health if len(analysing) == 2 and len(pending) == 2 else None

        health = until(first_analysed, FIRST_FRAME_S, "the fitting worker analysing while two are pending")
        first_frame_s = time.monotonic() - started
        ready = [w for w in health["workers"] if w["state"] == "ready"]
        assert len(ready) == 1 and sorted(ready[0]["cameras"]) == ["cam0", "cam1"], health["workers"]
        holder = ready[0]["id"]
        for worker in health["workers"]:
            if worker["state"] == "pending":
                assert worker["reason"] == f"{worker['id']} needs 0.6 CPU; the cluster has 1.0 CPU, 0.6 taken by {holder}", worker
        cam2 = next(c for c in health["cameras"] if c["id"] == "cam2")
        assert cam2["state"] == "unplaced" and "is pending" in cam2["last_error"], cam2

        # A node of 1 CPU joins: one pending worker fits there and takes cam2; the other still
        # fits nowhere (0.4 free on each node).
        node = RayNode(["--address", address, "--num-cpus", "1"], env | {"RAY_AUTH_MODE": "token"}, tmp_path / "node.log")

        def cam2_analysed(health: dict[str, Any]) -> dict[str, Any] | None:
            cam2 = next(c for c in health["cameras"] if c["id"] == "cam2")
            return health if cam2["analysed"] > 0 and cam2.get("worker") not in (None, holder) else None

        health = until(cam2_analysed, 120, "cam2 analysed on the worker the new node made room for")
        (still,) = [w for w in health["workers"] if w["state"] == "pending"]
        others = ", ".join(w for w in ("w1", "w2", "w3") if w != still["id"])
        assert still["reason"] == (f"{still['id']} needs 0.6 CPU; the cluster has 2.0 CPUs, 1.2 taken by {others}; "
                                   "0.8 are free, but at most 0.4 on one node"), still
        first_workers = set(workers(health))

        # cam2's worker is killed and the other is full: cam2 waits, then resumes on the worker
        # Ray starts in the room that freed, as a move from the killed one, its seq continued.
        killed = workers(health)[next(c["worker"] for c in health["cameras"] if c["id"] == "cam2")]
        os.kill(killed["pid"], signal.SIGKILL)

        def cam2_back(health: dict[str, Any]) -> dict[str, Any] | None:
            cam2 = next(c for c in health["cameras"] if c["id"] == "cam2")
            pending = [w for w in health["workers"] if w["state"] == "pending"]
            return health if cam2.get("worker") not in (None, holder, killed["id"]) and cam2["analysed"] > 0 and pending else None

        health = until(cam2_back, 120, "cam2 analysed again on another worker, one worker still pending")
        resumed_on = next(c["worker"] for c in health["cameras"] if c["id"] == "cam2")
    finally:
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=60)
        finally:
            if node is not None:
                node.stop()
    stop_s = time.monotonic() - stopping
    assert returncode == 0, log.read_text()[-4000:]
    assert stop_s < STOP_S, stop_s

    files = sorted((tmp_path / "out").glob("*.jsonl"))
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    service = [line for line in lines if line["camera"] is None]
    pending = [line["worker"] for line in service if line["event"] == "worker_pending"]
    assert sorted(pending[:2]) == sorted(first_workers - {holder}), pending  # at once, both
    assert [line["event"] for line in service].count("worker_started") == 3 and service[-1]["event"] == "stopped"
    cam2 = sorted((line for line in lines if line["camera"] == "cam2"), key=lambda line: line["wallclock"])
    events = [line for line in cam2 if line["type"] == "event"]
    assert [line["event"] for line in events[:3]] == ["unplaced", "added", "connected"], events
    moved = [line for line in events if line["event"] == "moved"]
    assert [(line["from"], line["to"]) for line in moved] == [(killed["id"], resumed_on)], events
    seqs = [line["seq"] for line in cam2 if line["type"] == "detections"]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    assert {path.name.split("-")[1] for path in files} == {"coordinator", holder, killed["id"], resumed_on}
    print(f"first analysed frame {first_frame_s:.1f} s after start; SIGTERM → exit {stop_s:.1f} s")
