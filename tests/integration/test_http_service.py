"""The HTTP surface of a real service process (``[http] listen``) against the real GStreamer
server: metrics, health, the camera API with its token, snapshots, face tracks and their crops,
the status page in a real headless Chromium, cameras added and removed while the others
stream, SIGHUP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from net import free_port
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import require

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
PASSWORD = "hunter2-in-url"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")



def camera_table(camera_id: str, url: str) -> str:
    return f'[[camera]]\nid = "{camera_id}"\nurl = "{url}"\ntransport = "tcp"\n'


def write_site(path: Path, model: Path, port: int, cameras: list[tuple[str, str]]) -> Path:
    path.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model}"\ninput = [640, 384]\nintra_op_threads = 1\n[output]\ndir = "out"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\ntoken_env = "DALISTREAM_TEST_TOKEN"\n'
        + "".join(camera_table(*camera) for camera in cameras)
    )
    return path


class Service:
    """``python -m dalistream --config site`` as a child process, and requests to its HTTP port."""

    def __init__(self, site: Path, port: int, *extra: str) -> None:
        env = {**os.environ, "DALISTREAM_TEST_TOKEN": TOKEN, "DALISTREAM_CACHE": str(site.parent / "cache")}
        self.stderr = (site.parent / "service.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dalistream", "--config", str(site), *extra],
            stdout=subprocess.DEVNULL, stderr=self.stderr, env=env, cwd=site.parent,
        )
        self.base = f"http://127.0.0.1:{port}"
        self.out = site.parent / "out"

    def request(self, method: str, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        status, _, payload = self.request(method, path, body, token)
        return status, json.loads(payload)

    def wait_until(self, condition, timeout_s: float = 40.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the service exited ({self.process.returncode}): {self.log()[-3000:]}"
            try:
                if result := condition():
                    return result
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}: {self.log()[-3000:]}")

    def camera(self, camera_id: str) -> dict[str, Any] | None:
        status, body = self.json("GET", f"/api/v1/cameras/{camera_id}")
        return body if status == 200 else None

    def streaming(self, camera_id: str) -> bool:
        camera = self.camera(camera_id)
        return camera is not None and camera["state"] == "streaming" and camera["analysed"] > 0

    def stop(self) -> list[dict[str, Any]]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0, self.log()[-3000:]
        self.stderr.close()
        return [json.loads(line) for path in sorted(self.out.glob("*.jsonl")) for line in path.read_text().splitlines()]

    def log(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


@pytest.fixture
def service(tmp_path: Path):
    started: list[Service] = []

    def start(site: Path, port: int, *extra: str) -> Service:
        started.append(Service(site, port, *extra))
        return started[-1]

    yield start
    for running in started:
        running.kill()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def timestamp(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["wallclock"].replace("Z", "+00:00")).timestamp()


def test_metrics_health_snapshots_and_the_status_page(rtsp_server, model_path: Path, tmp_path: Path, service):
    server = rtsp_server(2)
    port = free_port()
    with_password = server.url(1).replace("rtsp://", f"rtsp://viewer:{PASSWORD}@")
    site = write_site(tmp_path / "site.toml", model_path, port, [("cam0", server.url(0)), ("cam1", with_password)])
    running = service(site, port)

    running.wait_until(lambda: running.request("GET", "/live")[0] == 200, what="/live")
    running.wait_until(lambda: running.request("GET", "/ready")[0] == 200, what="/ready")
    running.wait_until(lambda: all(running.streaming(c) for c in ("cam0", "cam1")), what="both cameras streaming")
    time.sleep(6.0)  # a few seconds of analysis behind the numbers below

    status, health = running.json("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["ready"] is True, health
    assert [c["id"] for c in health["cameras"]] == ["cam0", "cam1"]
    for camera in health["cameras"]:
        assert camera["state"] == "streaming" and camera["codec"] == "H264" and camera["transport"] == "tcp", camera
        assert 3.5 <= camera["analysed_fps"] <= 5.5, camera
        assert camera["last_frame_age_s"] < 1.0 and camera["size"] == [1920, 1080], camera

    status, headers, text = running.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), headers
    samples = metric_samples(text.decode())
    for camera in ("cam0", "cam1"):
        label = (("camera", camera),)
        analysed = samples[("dalistream_camera_frames_analysed_total", label)]
        assert analysed >= 20, samples
        assert samples[("dalistream_camera_packets_total", label)] > 10 * analysed
        assert samples[("dalistream_camera_frames_decoded_total", label)] >= 4 * analysed
        assert samples[("dalistream_camera_faces_total", label)] >= 3 * analysed  # at 640x384, the clip's larger faces in every frame
        assert samples[("dalistream_camera_connected", label)] == 1.0
        assert samples[("dalistream_camera_packets_lost_total", label)] == 0.0
    assert samples[("dalistream_latency_seconds_count", ())] >= 40
    assert samples[("dalistream_stage_seconds_count", (("stage", "inference"),))] > 0
    assert samples[("dalistream_stage_seconds_count", (("stage", "decode"),))] > 0
    assert samples[("dalistream_output_records_lost_total", ())] == 0.0
    assert samples[("dalistream_ready", ())] == 1.0
    assert samples[("dalistream_process_resident_memory_bytes", ())] > 0

    status, listing = running.json("GET", "/api/v1/cameras")
    assert status == 200 and [c["id"] for c in listing["cameras"]] == ["cam0", "cam1"]
    assert listing["cameras"][1]["config"]["url"].startswith("rtsp://viewer:***@"), listing
    assert running.request("GET", "/api/v1/cameras/nope")[0] == 404

    status, headers, jpeg = running.request("GET", "/cameras/cam0/latest.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    snapshot = np.asarray(Image.open(BytesIO(jpeg)).convert("RGB")).astype(int)
    assert snapshot.shape == (360, 640, 3)  # the frame as analysed: 1080p letterboxed into 640x384
    red, green, blue = snapshot[..., 0], snapshot[..., 1], snapshot[..., 2]
    assert ((green > 200) & (red < 90) & (blue < 90)).sum() > 250  # the faces' green boxes
    assert running.request("GET", "/cameras/nope/latest.jpg")[0] == 404

    status, faces = running.json("GET", "/api/v1/cameras/cam0/faces")
    assert status == 200 and faces["camera"] == "cam0", faces
    live = [track for track in faces["tracks"] if track["state"] == "live"]
    assert len(live) >= 3 and [t["track"] for t in faces["tracks"]] == sorted((t["track"] for t in faces["tracks"]), reverse=True)
    with_crop = [track for track in live if track["crop"] is not None]
    assert with_crop and all(t["crop"] == f"/faces/cam0/{t['first'][:10]}/{t['track']}.jpg" for t in with_crop), live
    status, headers, jpeg = running.request("GET", with_crop[0]["crop"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    x1, y1, x2, y2 = with_crop[0]["box"]
    # The crop is cut from the 1080p frame (with a margin), not the 640x360 one analysed.
    assert Image.open(BytesIO(jpeg)).height >= 1.2 * (y2 - y1), (Image.open(BytesIO(jpeg)).size, with_crop[0])
    assert running.request("GET", "/faces/cam0/2001-01-01/1.jpg")[0] == 404
    assert running.request("GET", "/faces/%2E%2E/2001-01-01/1.jpg")[0] == 404
    assert running.request("GET", "/api/v1/cameras/nope/faces")[0] == 404

    require(CHROMIUM is not None, "Chromium missing (Debian package chromium): run scripts/setup.sh")
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([*browser, "--dump-dom", running.base + "/"], capture_output=True, text=True, timeout=60).stdout
    for camera in ("cam0", "cam1"):
        assert f'data-camera="{camera}" data-state="streaming"' in dom, dom[-2000:]
    assert len(re.findall(r'<img alt="latest analysed frame of cam\d" [^>]*data-loaded="1"', dom)) == 2, dom[-2000:]  # both snapshots
    assert [int(live) >= 3 for live in re.findall(r'data-live="(\d+)"', dom)] == [True, True], dom[-2000:]  # faces in view
    assert len(re.findall(r'<span data-track="\d+">#\d+ [\d.]+ s</span>', dom)) >= 6, dom[-2000:]
    assert len(re.findall(r'<img data-track="\d+" [^>]*data-loaded="1"', dom)) >= 4, dom[-2000:]  # crops shown
    assert PASSWORD not in dom and PASSWORD not in text.decode()
    screenshot = tmp_path / "page.png"
    subprocess.run([*browser, "--window-size=1200,800", f"--screenshot={screenshot}", running.base + "/"],
                   capture_output=True, timeout=60, check=True)
    page = np.asarray(Image.open(screenshot).convert("RGB"))
    assert page.shape == (800, 1200, 3)
    colours = np.unique(page.reshape(-1, 3), axis=0)
    assert len(colours) > 2000, len(colours)  # two video frames on the page, not just text and boxes
    assert (np.abs(page.astype(int) - (0x2E, 0x7D, 0x32)).sum(axis=2) < 10).sum() > 500  # green "ok"/"streaming" badges

    lines = running.stop()
    assert {line["camera"] for line in lines if line["type"] == "detections"} == {"cam0", "cam1"}


def test_cameras_added_and_removed_at_run_time_and_by_sighup(rtsp_server, model_path: Path, tmp_path: Path, service):
    server = rtsp_server(4)
    port = free_port()
    site = write_site(tmp_path / "site.toml", model_path, port, [("cam0", server.url(0)), ("cam1", server.url(1))])
    running = service(site, port, "--persist-cameras")
    running.wait_until(lambda: all(running.streaming(c) for c in ("cam0", "cam1")), what="both cameras streaming")

    cam2 = {"id": "cam2", "url": server.url(2), "transport": "tcp"}
    assert running.json("POST", "/api/v1/cameras", cam2)[0] == 401  # no token
    assert running.json("POST", "/api/v1/cameras", cam2, token="wrong")[0] == 401
    assert running.json("DELETE", "/api/v1/cameras/cam1")[0] == 401
    status, error = running.json("POST", "/api/v1/cameras", {**cam2, "bogus": 1}, token=TOKEN)
    assert status == 400 and error["error"].startswith("camera.bogus: unknown key"), error
    status, error = running.json("POST", "/api/v1/cameras", {**cam2, "transport": "pigeon"}, token=TOKEN)
    assert status == 400 and error["error"].startswith("camera.transport:"), error
    status, error = running.json("POST", "/api/v1/cameras", {"url": server.url(2)}, token=TOKEN)
    assert status == 400 and error["error"] == "camera.id: required key missing", error
    status, _, payload = running.request("POST", "/api/v1/cameras", raw=b"{not json", token=TOKEN)
    assert status == 400 and b"not JSON" in payload
    status, error = running.json("POST", "/api/v1/cameras", {**cam2, "id": "cam0"}, token=TOKEN)
    assert status == 409 and "cam0" in error["error"], error
    huge = {**cam2, "id": "wall", "expect_size": [7680, 4320], "expect_fps": 120.0}
    status, error = running.json("POST", "/api/v1/cameras", huge, token=TOKEN)
    assert status == 422 and error["error"].startswith("not admitted:"), error

    status, added = running.json("POST", "/api/v1/cameras", cam2, token=TOKEN)
    assert status == 201 and added["id"] == "cam2", added
    running.wait_until(lambda: running.streaming("cam2"), what="cam2 streaming")
    status, removed = running.json("DELETE", "/api/v1/cameras/cam1", token=TOKEN)
    assert status == 200 and removed["removed"] == "cam1" and removed["analysed"] > 0, removed
    assert running.json("DELETE", "/api/v1/cameras/cam1", token=TOKEN)[0] == 404
    assert [c["id"] for c in running.json("GET", "/api/v1/cameras")[1]["cameras"]] == ["cam0", "cam2"]
    state = json.loads((tmp_path / "site.cameras.json").read_text())
    assert [c["id"] for c in state["camera"]] == ["cam0", "cam2"]
    assert (tmp_path / "site.cameras.json").stat().st_mode & 0o777 == 0o600
    time.sleep(4.0)

    # SIGHUP: the file now says cam0 and cam3. cam2 goes, cam3 comes, cam0 is left alone.
    write_site(site, model_path, port, [("cam0", server.url(0)), ("cam3", server.url(3))])
    running.process.send_signal(signal.SIGHUP)
    running.wait_until(lambda: running.streaming("cam3") and running.camera("cam2") is None, what="the reload")
    site.write_text(site.read_text() + "[[camera]]\nid = 'cam0'\nurl = 'rtsp://127.0.0.1:1/x'\n")  # duplicate id
    running.process.send_signal(signal.SIGHUP)
    running.wait_until(lambda: "config reload refused" in running.log(), what="the refusal")
    assert [c["id"] for c in running.json("GET", "/api/v1/cameras")[1]["cameras"]] == ["cam0", "cam3"]
    time.sleep(3.0)
    lines = running.stop()

    def of(camera: str) -> list[dict[str, Any]]:
        return [line for line in lines if line["camera"] == camera]

    for camera in ("cam1", "cam2"):
        assert of(camera)[-1]["event"] == "removed", of(camera)[-3:]  # nothing after it
    assert [line["event"] for line in of("cam3") if line["type"] == "event"][:2] == ["added", "connected"]
    assert any(line["type"] == "detections" for line in of("cam3"))
    # cam0 never paused: 5 fps by pts all along, no gap between analysed frames while the others came and went.
    frames = [line for line in of("cam0") if line["type"] == "detections"]
    pts = [frame["pts"] for frame in frames]
    assert (len(pts) - 1) / (pts[-1] - pts[0]) == pytest.approx(5.0, rel=0.03)
    assert max(np.diff([timestamp(frame) for frame in frames])) < 1.0
    assert [line["event"] for line in of("cam0") if line.get("event") in ("connected", "disconnected")] == ["connected"]
