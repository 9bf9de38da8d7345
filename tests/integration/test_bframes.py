"""Cameras and clips with B-frames (x264 -bf 2, GOP 50): records at detect_fps, in pts order.

The decoder returns B-frame streams reordered, in presentation order. The GStreamer server
re-sending a raw file stamps RTP in decode order, as some senders do; an MP4 carries true
presentation times; a raw file carries none (its units are timed in decode order).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from clips import encode
from pipeline_runs import run_pipeline
from dalistream.config import Config
from dalistream.tools.demo import demo_config
from dalistream.tools.localserver import LocalRtspServer

pytestmark = pytest.mark.integration

FRAMES = 150  # 6 s at 25 fps


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory) -> Path:
    return encode(tmp_path_factory.mktemp("clips") / "bframes.h264", [(320, 240, FRAMES)], gop=50, bframes=2)


def detections(config: Config, duration_s: float | None) -> list[dict[str, Any]]:
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, input=(320, 256)))
    return [line for line in run_pipeline(config, duration_s)[0] if line["type"] == "detections"]


def test_rtsp_camera_stamped_in_decode_order(gst_rtsp_server_available, bframe_clip: Path, model_path, tmp_path):
    with LocalRtspServer(bframe_clip, 1) as server:
        found = detections(demo_config([server.url(0)], tmp_path), 8.0)
    pts = [d["pts"] for d in found]
    assert pts == sorted(set(pts)), pts
    assert len(pts) - 1 == pytest.approx(5.0 * (pts[-1] - pts[0]), abs=1), pts  # 5 fps, not 10
    assert all(0.19 < b - a < 0.25 for a, b in zip(pts, pts[1:])), pts


def test_mp4_with_presentation_times_keeps_them(tmp_path: Path, model_path):
    clip = encode(tmp_path / "bframes.mp4", [(320, 240, FRAMES)], container="mp4", gop=50, bframes=2)
    found = detections(demo_config([clip.as_uri()], tmp_path / "out", camera={"pace": "fast"}), None)
    assert [d["pts"] for d in found] == [pytest.approx(i / 5) for i in range(FRAMES // 5)]


def test_raw_file_timed_in_decode_order(bframe_clip: Path, tmp_path: Path, model_path):
    found = detections(demo_config([bframe_clip.as_uri()], tmp_path, camera={"pace": "fast"}), None)
    pts = [d["pts"] for d in found]
    assert pts == sorted(set(pts)) and abs(len(pts) - FRAMES // 5) <= 1, pts
