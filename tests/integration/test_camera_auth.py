"""Authentication and RTSPS against the real GStreamer RTSP server.

Wrong credentials (Basic and Digest): a ``disconnected`` event that names the 401, reconnects
with growing delays, and recovery once the server accepts the camera's credentials; no secret
in the JSON lines, the logs (even aiortsp's debug narration) or the command's output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from net import free_port

from dalistream import config as config_module
from dalistream.tools.demo import run_for
from dalistream.tools.localserver import LocalRtspServer, ServerAuth
from dalistream.pipeline.runtime import Runtime

pytestmark = pytest.mark.integration

USER = "cam-user-7q"
CAMERA_PASSWORD = "c@m:pw/%Z9 é"  # what the camera is configured with (needs percent-encoding in a URL)
OTHER_PASSWORD = "server-side-8x"  # what the server wants at first
PASSWORD_ENV = "DALISTREAM_TEST_CAMERA_PASSWORD"


def secrets_of(user: str, password: str) -> list[str]:
    return [
        password,
        quote(password, safe=""),
        f"{user}:{password}",
        base64.b64encode(f"{user}:{password}".encode()).decode(),
    ]



def records(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(out.glob("*.jsonl")) for line in path.read_text().splitlines() if line]


def wait_for(condition: Callable[[], bool], timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "dalistream exited early"
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("method", ["basic", "digest"])
def test_wrong_credentials_back_off_and_recover_once_fixed(method, sample_clip, gst_rtsp_server_available, model_path, tmp_path):
    port = free_port()
    if method == "basic":  # user name and password from the configuration and the environment
        camera = f'url = "rtsp://127.0.0.1:{port}/cam0"\nusername = "{USER}"\npassword_env = "{PASSWORD_ENV}"\n'
    else:  # percent-encoded credentials in the URL
        camera = f'url = "rtsp://{USER}:{quote(CAMERA_PASSWORD, safe="")}@127.0.0.1:{port}/cam0"\n'
    site = tmp_path / "site.toml"
    site.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\n[output]\ndir = "out"\n'
        f'[[camera]]\nid = "door"\n{camera}backoff_first_s = 0.3\nbackoff_cap_s = 1.5\n'
    )
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    server = LocalRtspServer(sample_clip, 1, port=port, auth=ServerAuth(USER, OTHER_PASSWORD, method)).start()
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dalistream", "--config", str(site), "--log-level", "debug"],
            stdout=stdout,
            stderr=stderr,
            cwd=tmp_path,
            env={**os.environ, PASSWORD_ENV: CAMERA_PASSWORD},
        )
    out = tmp_path / "out"
    try:
        rejected = lambda: sum(r.get("event") == "disconnected" for r in records(out)) >= 4  # noqa: E731
        wait_for(rejected, 45, process)
        server.stop()  # fix it: the server now takes the camera's credentials, on the same port
        server = LocalRtspServer(sample_clip, 1, port=port, auth=ServerAuth(USER, CAMERA_PASSWORD, method)).start()
        wait_for(lambda: sum(r["type"] == "detections" for r in records(out)) >= 5, 45, process)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    finally:
        server.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr_path.read_text()[-3000:]

    events = [r for r in records(out) if r["type"] == "event"]
    connected_at = next(i for i, e in enumerate(events) if e["event"] == "connected")
    before = events[:connected_at]
    failures = [e for e in before if e["event"] == "disconnected"]
    assert len(failures) >= 4
    # The first failures are all 401s (later ones may be the server's restart).
    assert all("authentication failed (401)" in e["reason"] for e in failures[:4]), failures
    delays = [e["delay_s"] for e in before if e["event"] == "reconnecting"]
    assert delays[2] > delays[0] and max(delays) <= 1.5, delays

    stderr_text = stderr_path.read_text()
    output = stdout_path.read_text() + stderr_text + "".join(p.read_text() for p in out.glob("*.jsonl"))
    for secret in secrets_of(USER, CAMERA_PASSWORD) + secrets_of(USER, OTHER_PASSWORD)[2:]:
        assert secret not in output, f"credential leaked: {secret!r}"
    # No log spam: at most a couple of log lines per failed attempt, never a traceback.
    noisy = [line for line in stderr_text.splitlines() if "401" in line or "authentication" in line.lower()]
    assert len(noisy) <= 2 * len(failures), noisy
    assert "Traceback" not in stderr_text


def test_rtsps_with_digest_analyses_and_untrusted_certificate_is_an_event(
    sample_clip, gst_rtsp_server_available, model_path, tls_files, tmp_path, monkeypatch, caplog
):
    cert, key = tls_files
    monkeypatch.setenv(PASSWORD_ENV, CAMERA_PASSWORD)
    caplog.set_level(logging.DEBUG, logger="dalistream.aiortsp")  # aiortsp's request narration, Authorization included
    with LocalRtspServer(sample_clip, 2, auth=ServerAuth(USER, CAMERA_PASSWORD, "digest"), tls_cert=cert, tls_key=key) as server:
        assert server.url(0).startswith("rtsps://")
        common = {"username": USER, "password_env": PASSWORD_ENV, "backoff_first_s": 0.5, "backoff_cap_s": 1.0}
        config = config_module.from_mapping(
            {
                "pipeline": {"device": "cpu"},
                "model": {"onnx": str(model_path)},
                "output": {"dir": str(tmp_path / "out")},
                "camera": [
                    {"id": "tls", "url": server.url(0), "tls_ca_file": str(cert), **common},
                    {"id": "untrusted", "url": server.url(1), **common},  # the system's CAs do not know it
                ],
            }
        )
        runtime = Runtime(config)
        asyncio.run(run_for(runtime, 10.0))
    lines = records(tmp_path / "out")
    assert sum(r["type"] == "detections" and r["camera"] == "tls" for r in lines) >= 10
    untrusted = [r for r in lines if r["camera"] == "untrusted"]
    assert not any(r["type"] == "detections" for r in untrusted)
    reasons = [r["reason"] for r in untrusted if r.get("event") == "disconnected"]
    assert reasons and all("CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason for reason in reasons), reasons

    assert "Authorization: ***" in caplog.text  # the debug narration was there, and redacted
    text = caplog.text + "".join(p.read_text() for p in (tmp_path / "out").glob("*.jsonl"))
    for secret in secrets_of(USER, CAMERA_PASSWORD):
        assert secret not in text, f"credential leaked: {secret!r}"
