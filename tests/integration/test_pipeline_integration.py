"""End to end against the real GStreamer RTSP server: RTSP → JSON lines, TCP and UDP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dalistream.tools.demo import demo_config, run_for, summarize
from dalistream.pipeline.runtime import Runtime

pytestmark = pytest.mark.integration

RUN_S = 12.0
# Two 1080p cameras analysed at 5 fps and 960×544 take ~170 % of this 2-core machine (ONNX
# Runtime ~90–130 ms of CPU per frame on its AVX2 cores), and a busy CI host then misses the
# rate; at 2 fps the same stages run with room to spare. 640×384 would be cheaper too, but
# loses the clip's small faces (recall 0.74).
DETECT_FPS = 2.0


def test_two_cameras_tcp_and_udp_to_jsonl(rtsp_server, clip_truth, model_path, tmp_path: Path):
    server = rtsp_server(2)
    config = demo_config([server.url(0), server.url(1)], tmp_path, ["tcp", "udp"], detect_fps=DETECT_FPS)
    runtime = Runtime(config)
    asyncio.run(run_for(runtime, RUN_S))

    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    assert lines, "no JSON lines written"
    for line in lines:
        assert line["v"] == 1 and line["type"] in ("detections", "event")
    report = summarize(lines, clip_truth)
    for camera in ("cam0", "cam1"):
        entry = report["cameras"][camera]
        assert entry["events"].get("connected") == 1, entry
        assert "disconnected" not in entry["events"], entry
        assert entry["analysed"] >= DETECT_FPS * (RUN_S - 6), entry
        assert entry["analysed_fps"] == pytest.approx(DETECT_FPS, rel=0.1), entry
        assert entry["recall"] >= 0.9, entry
    detections = [line for line in lines if line["type"] == "detections"]
    first = detections[0]
    assert (first["width"], first["height"]) == (1920, 1080)
    assert all(len(face["landmarks"]) == 5 for line in detections for face in line["faces"])
    seqs = [line["seq"] for line in detections if line["camera"] == "cam1"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
