"""Shared fixtures: the sample clip, its ground truth, the real GStreamer RTSP server, the
research data in ../shared/data and a self-signed certificate.

Every missing prerequisite goes through :func:`require`: outside CI it skips with the command
that provides it; in CI (CI=true, which .ci/run sets) it fails, so a broken set-up can never
pass as "skipped". Tests marked ``gpu`` are the exception: CI has no GPU, so what they lack
skips everywhere, and scripts/gpu_check.sh lists those skips (-rs) in its log.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from dalistream.tools.assets import tracks_clip as tracks_clip_path
from dalistream.tools.broker import tls_files as make_tls_files
from dalistream.tools.demo import SAMPLE_CLIP, SAMPLE_TRUTH
from dalistream.tools.groundtruth import ClipTruth
from dalistream.tools.localserver import SYSTEM_PYTHON, LocalRtspServer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "engines" / "retinaface_mnet025.onnx"
SHARED_DATA = ROOT.parent / "shared" / "data"  # research data (../shared/data/README.md), never in the repository


CALIB = SHARED_DATA / "calib"
FACES_DEV = SHARED_DATA / "faces-dev"
_running: list[pytest.Item] = []  # the test being run, for require() to read its markers


def require(condition: bool, reason: str) -> None:
    """Go on if ``condition``; else skip saying ``reason`` (how to get what is missing), or fail
    under CI=true. A test marked ``gpu`` always skips: no CI machine has a GPU."""
    if condition:
        return
    gpu = bool(_running) and _running[-1].get_closest_marker("gpu") is not None
    if os.environ.get("CI") and not gpu:
        pytest.fail(f"{reason} (CI must run this test)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, install: str) -> ModuleType:
    """``import name``, through :func:`require`: ``install`` says how to get it."""
    try:
        found = importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package missing
        found = False
    require(found, f"{name} missing: {install}")
    return importlib.import_module(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


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


@pytest.fixture(scope="session")
def calib_dir() -> Path:
    """../shared/data/calib: WIDER FACE train images for INT8 calibration (research data)."""
    require(any(CALIB.glob("*.jpg")), f"{CALIB} absent: calibration images are research data in ../shared/data, never in the repository")
    return CALIB


@pytest.fixture(scope="session")
def faces_dev() -> Path:
    """../shared/data/faces-dev: the WIDER FACE accuracy set, ``images/`` and ``gt.txt`` (research data)."""
    require((FACES_DEV / "gt.txt").is_file(), f"{FACES_DEV} absent: the WIDER FACE accuracy set is research data in ../shared/data, never in the repository")
    return FACES_DEV
