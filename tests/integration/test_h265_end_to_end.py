"""End to end with H.265: the real GStreamer server (rtph265pay) → RTSP → H.265 depacketizer → JSON lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, require

from dalistream.tools.demo import demo_config, run_for, summarize
from dalistream.tools.groundtruth import ClipTruth
from dalistream.tools.localserver import LocalRtspServer
from dalistream.pipeline.runtime import Runtime

pytestmark = pytest.mark.integration

H265_CLIP = ROOT / "media" / "sample_1080p25.h265"
H265_TRUTH = ROOT / "media" / "sample_1080p25.h265.gt.json"
RUN_S = 12.0


@pytest.fixture
def h265_server(gst_rtsp_server_available: None) -> Iterator[LocalRtspServer]:
    require(H265_CLIP.is_file() and H265_TRUTH.is_file(), "H.265 sample clip missing: run scripts/setup.sh")
    with LocalRtspServer(H265_CLIP, 1, codec="h265") as server:
        yield server


def test_h265_camera_to_jsonl(h265_server: LocalRtspServer, model_path: Path, tmp_path: Path) -> None:
    config = demo_config([h265_server.url(0)], tmp_path, detect_fps=5.0)
    runtime = Runtime(config)
    asyncio.run(run_for(runtime, RUN_S))

    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    connected = [line for line in lines if line["type"] == "event" and line["event"] == "connected"]
    assert [line.get("codec") for line in connected] == ["H265"], connected
    entry = summarize(lines, ClipTruth.load(H265_TRUTH))["cameras"]["cam0"]
    assert "disconnected" not in entry["events"], entry
    assert entry["analysed"] >= 5 * (RUN_S - 6), entry
    assert entry["analysed_fps"] == pytest.approx(5.0, rel=0.1), entry
    assert entry["recall"] >= 0.9, entry
    detections = [line for line in lines if line["type"] == "detections"]
    assert {(line["width"], line["height"]) for line in detections} == {(1920, 1080)}
