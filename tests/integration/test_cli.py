"""The command line as users run it: a real process, a real server, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dalistream", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def write_site(tmp_path: Path, model: Path, urls: list[str]) -> Path:
    cameras = "".join(f'[[camera]]\nid = "cam{i}"\nurl = "{url}"\n' for i, url in enumerate(urls))
    site = tmp_path / "site.toml"
    site.write_text(f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model}"\n[output]\ndir = "out"\n{cameras}')
    return site


def records(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(out.glob("*.jsonl")) for line in path.read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_flushes_and_exits_zero(rtsp_server, model_path, tmp_path: Path, sig):
    server = rtsp_server(2)
    site = write_site(tmp_path, model_path, [server.url(0), server.url(1)])
    process = run_cli("--config", str(site))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if sum(r["type"] == "detections" for r in records(tmp_path / "out")) >= 10:
            break
        time.sleep(0.5)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    lines = records(tmp_path / "out")  # every line parses: nothing half-written
    assert {r["camera"] for r in lines if r["type"] == "detections"} == {"cam0", "cam1"}
    assert "[error" not in stderr and "[warning" not in stderr, stderr


def test_duration_bounds_a_run_and_unreachable_cameras_are_events(model_path, tmp_path: Path):
    site = write_site(tmp_path, model_path, ["rtsp://127.0.0.1:9/nothing"])
    process = run_cli("--config", str(site), "--duration", "3", cwd=tmp_path)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    events = [r for r in records(tmp_path / "out") if r["type"] == "event"]
    assert events and events[0]["event"] == "disconnected"
    assert "Unable to connect" in events[0]["reason"]
    assert any(r["event"] == "reconnecting" for r in events)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[pipeline]\nmax_batch = 0\n', "pipeline.max_batch: must be > 0"),
        ('[model]\nonnx = "nowhere.onnx"\n', "model.onnx:"),
    ],
)
def test_config_errors_name_the_key_and_exit_2(tmp_path: Path, toml: str, message: str):
    site = tmp_path / "site.toml"
    site.write_text(toml + '[[camera]]\nid = "a"\nurl = "rtsp://h/x"\n')
    process = run_cli("--config", str(site))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert message in stderr and "Traceback" not in stderr


def test_password_never_printed(model_path, tmp_path: Path):
    site = write_site(tmp_path, model_path, ["rtsp://admin:hunter2@127.0.0.1:9/x"])
    process = run_cli("check", str(site))
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "hunter2" not in stdout + stderr and "admin:***@" in stdout
    process = run_cli("--config", str(site), "--duration", "2")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "hunter2" not in stdout + stderr
    assert all("hunter2" not in path.read_text() for path in (tmp_path / "out").glob("*.jsonl"))
