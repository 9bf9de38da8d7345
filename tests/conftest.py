"""Shared fixtures: the sample clip, its ground truth and the real GStreamer RTSP server.

Outside CI a missing prerequisite skips with the command that provides it; in CI (CI=true) it
fails, so a broken set-up can never pass as "skipped".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dalistream.tools.assets import tracks_clip as tracks_clip_path
from dalistream.tools.broker import tls_files as make_tls_files
from dalistream.tools.demo import SAMPLE_CLIP, SAMPLE_TRUTH
from dalistream.tools.groundtruth import ClipTruth
from dalistream.tools.localserver import SYSTEM_PYTHON, LocalRtspServer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "engines" / "retinaface_mnet025.onnx"
SHARED_DATA = ROOT.parent / "shared" / "data"  # research data (../shared/data/README.md), never in the repository


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def model_path() -> Path:
    require(MODEL.is_file(), f"{MODEL} missing: run scripts/setup.sh")
    return MODEL


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    require(SAMPLE_CLIP.is_file() and SAMPLE_TRUTH.is_file(), "sample clip missing: run scripts/setup.sh")
    return SAMPLE_CLIP


@pytest.fixture(scope="session")
def tracks_clip() -> Path:
    """The clip of walkers that cross and leave (``sample --scene tracks``), its ground truth beside it."""
    clip = tracks_clip_path()
    require(clip.is_file() and clip.with_suffix(".gt.json").is_file(), "tracks clip missing: run scripts/setup.sh")
    return clip


@pytest.fixture(scope="session")
def clip_truth(sample_clip: Path) -> ClipTruth:
    return ClipTruth.load(SAMPLE_TRUTH)


@pytest.fixture(scope="session")
def gst_rtsp_server_available() -> None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        ok = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    require(ok, "GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) missing: run scripts/setup.sh")


@pytest.fixture
def rtsp_server(sample_clip: Path, gst_rtsp_server_available: None) -> Iterator[type[LocalRtspServer]]:
    """Factory: ``rtsp_server(mounts)`` starts the real server on a free port; stopped after the test."""
    started: list[LocalRtspServer] = []

    def start(mounts: int) -> LocalRtspServer:
        server = LocalRtspServer(sample_clip, mounts).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with Debian's openssl."""
    require(shutil.which("openssl") is not None, "openssl missing: apt-get install openssl")
    return make_tls_files(tmp_path)
