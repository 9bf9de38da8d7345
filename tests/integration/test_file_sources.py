"""Recorded clips as cameras (``file://``): the same pipeline from the access units on, paced
like a camera or as fast as it goes, looping, in raw streams and containers, and broken files
that become events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import av
import pytest

from clips import GOP, encode
from pipeline_runs import run_pipeline
from dalistream.config import Config
from dalistream.pipeline.runtime import Runtime
from dalistream.tools.demo import demo_config, summarize
from dalistream.tools.groundtruth import ClipTruth

pytestmark = pytest.mark.integration

SAMPLE_SECONDS = 20.0  # the sample clip: 500 frames at 25 fps


def run(config: Config, duration_s: float | None = None) -> tuple[list[dict[str, Any]], float]:
    """Run until ``duration_s`` (None: until every clip ended); every JSON line, and the wall time."""
    started = time.monotonic()
    lines, _ = run_pipeline(config, duration_s)
    return lines, time.monotonic() - started


def of(lines: list[dict[str, Any]], camera: str, kind: str) -> list[dict[str, Any]]:
    return [
        line for line in lines
        if line["camera"] == camera and (line["type"] == "detections" if kind == "detections" else line.get("event") == kind)
    ]


def test_realtime_pace_gives_5_fps_of_the_clip_with_its_faces(sample_clip: Path, clip_truth: ClipTruth, model_path, tmp_path):
    config = demo_config([sample_clip.as_uri()], tmp_path)
    lines, _ = run(config, 9.0)
    report = summarize(lines, clip_truth)["cameras"]["cam0"]
    assert report["analysed_fps"] == pytest.approx(5.0, rel=0.02), report
    assert report["analysed"] >= 35 and report["recall"] >= 0.99, report
    assert {event: n for event, n in report["events"].items() if not event.startswith("face_")} == {"connected": 1}, report
    detections = of(lines, "cam0", "detections")
    # Paced at the clip's own rate: stream time and wall time advance together.
    wall = [datetime.fromisoformat(d["wallclock"].replace("Z", "+00:00")).timestamp() for d in detections]
    assert wall[-1] - wall[0] == pytest.approx(detections[-1]["pts"] - detections[0]["pts"], abs=0.5)
    (connected,) = of(lines, "cam0", "connected")
    assert (connected["codec"], connected["file"]) == ("H264", sample_clip.name)


def test_fast_pace_runs_the_whole_clip_faster_than_real_time_and_drops_nothing(sample_clip: Path, clip_truth, model_path, tmp_path):
    config = demo_config([sample_clip.as_uri()], tmp_path, camera={"pace": "fast"}, max_batch=4)
    lines, elapsed = run(config)  # ends by itself: the only camera is a clip that ends
    detections = of(lines, "cam0", "detections")
    assert [d["seq"] for d in detections] == list(range(100))  # every 5th of 500 frames, none dropped
    assert [d["pts"] for d in detections] == [pytest.approx(i / 5) for i in range(100)]
    assert not of(lines, "cam0", "dropped") and not of(lines, "cam0", "gap")
    assert of(lines, "cam0", "end_of_file")[0]["plays"] == 1
    assert summarize(lines, clip_truth)["cameras"]["cam0"]["recall"] >= 0.99
    assert elapsed < 0.75 * SAMPLE_SECONDS, f"fast pace took {elapsed:.1f} s for {SAMPLE_SECONDS:g} s of video"


def test_a_looping_clip_keeps_its_timestamps_growing(tmp_path: Path, model_path):
    clip = encode(tmp_path / "two_seconds.h264", [(320, 240, 50)])
    config = demo_config([clip.as_uri()], tmp_path / "out", camera={"pace": "fast", "loop": True}, max_batch=4)
    config = _small_input(config)
    lines, _ = run(config, 6.0)
    pts = [d["pts"] for d in of(lines, "cam0", "detections")]
    assert pts == sorted(set(pts)) and pts[-1] > 4.0, pts[-5:]  # several plays, one clock
    assert [p * 5 for p in pts] == [pytest.approx(i) for i in range(len(pts))]  # 5 fps across the seams
    ends = of(lines, "cam0", "end_of_file")
    assert [e["plays"] for e in ends] == list(range(1, len(ends) + 1)) and all(e["looping"] for e in ends)
    assert len(of(lines, "cam0", "connected")) == 1


def test_cameras_started_together_have_their_frames_taken_at_staggered_moments(tmp_path: Path, model_path):
    clip = encode(tmp_path / "two_seconds.h264", [(320, 240, 50)])
    config = _small_input(demo_config([clip.as_uri()] * 2, tmp_path / "out", camera={"pace": "fast"}))
    lines, _ = run(config)
    assert [d["pts"] for d in of(lines, "cam0", "detections")] == [pytest.approx(i / 5) for i in range(10)]
    # The second camera's slots start 0.618 of a slot (124 ms) earlier: its first frame, then
    # the first at or after 76 ms, 276 ms, …, so the two cameras' frames never come together.
    assert [d["pts"] for d in of(lines, "cam1", "detections")] == [0.0] + [pytest.approx(0.08 + i / 5) for i in range(10)]


def test_mp4_h264_and_matroska_h265_clips(sample_clip: Path, clip_truth: ClipTruth, tmp_path: Path, model_path):
    mp4 = _remux(sample_clip, tmp_path / "sample.mp4", frames=50)
    mkv = encode(tmp_path / "small.mkv", [(320, 240, 50)], codec="h265", container="matroska")
    config = demo_config([mp4.as_uri(), mkv.as_uri()], tmp_path / "out", camera={"pace": "fast"}, max_batch=4)
    lines, _ = run(config)
    report = summarize(lines, clip_truth)["cameras"]
    assert report["cam0"]["analysed"] == 10 and report["cam0"]["recall"] >= 0.99, report
    assert {(d["width"], d["height"]) for d in of(lines, "cam0", "detections")} == {(1920, 1080)}
    # The second camera's sampling is staggered (see the test above): its first frame, then 5 fps.
    assert [d["pts"] for d in of(lines, "cam1", "detections")] == [0.0] + [pytest.approx(0.08 + i / 5) for i in range(10)]
    assert {(d["width"], d["height"]) for d in of(lines, "cam1", "detections")} == {(320, 240)}
    assert [c["codec"] for c in of(lines, "cam0", "connected") + of(lines, "cam1", "connected")] == ["H264", "H265"]
    assert not of(lines, "cam0", "gap") and not of(lines, "cam1", "gap")


def test_truncated_corrupt_and_foreign_files_are_events_not_crashes(tmp_path: Path, model_path):
    healthy = encode(tmp_path / "healthy.h264", [(320, 240, 100)])
    data = healthy.read_bytes()
    truncated = tmp_path / "truncated.h264"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    corrupt = tmp_path / "corrupt.h264"
    middle = len(data) // 3
    corrupt.write_bytes(data[:middle] + os.urandom(3000) + data[middle + 3000 :])
    foreign = tmp_path / "foreign.mp4"
    foreign.write_bytes(os.urandom(20_000))
    clips = [healthy, truncated, corrupt, foreign]
    config = _small_input(demo_config([c.as_uri() for c in clips], tmp_path / "out", camera={"pace": "fast"}, max_batch=4))
    lines, _ = run(config)  # every camera ends by itself, the broken ones included

    assert [d["seq"] for d in of(lines, "cam0", "detections")] == list(range(20))  # the healthy clip, whole
    cut = of(lines, "cam1", "detections")
    # Up to the cut, then its end (a staggered camera's first slot is short: a frame more).
    assert 8 <= len(cut) <= 13 and of(lines, "cam1", "end_of_file"), len(cut)
    assert sum(g.get("decode_errors", 0) + g.get("corrupt_frames", 0) for g in of(lines, "cam2", "gap")) > 0
    after = [d for d in of(lines, "cam2", "detections") if d["pts"] > (100 / 3 + GOP) / 25]
    assert after, "decoding did not recover at the next IDR after the corrupt bytes"
    (error,) = of(lines, "cam3", "file_error")
    assert error["reason"].startswith("cannot open foreign.mp4: "), error
    assert not of(lines, "cam3", "detections")


def _small_input(config: Config) -> Config:
    """The 320×240 clips at a matching model input: cheap to run."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, input=(320, 256)))


def _remux(clip: Path, out: Path, frames: int) -> Path:
    """The first ``frames`` access units of a raw H.264 clip, copied into MP4 (length-prefixed samples)."""
    with av.open(str(clip), format="h264") as source, av.open(str(out), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.time_base = Fraction(1, 90_000)
        for index, packet in enumerate(islice((p for p in source.demux() if p.size), frames)):
            packet.pts = packet.dts = index * 3600
            packet.duration = 3600
            packet.time_base = stream.time_base
            packet.stream = stream
            target.mux(packet)
    return out


class _BrokenDetectorRuntime(Runtime):
    """The detector fails on the third batch: a bug in a stage every camera shares."""

    batches = 0

    def _detect(self, detector, frames):
        self.batches += 1
        if self.batches == 3:
            raise KeyError("injected into the detector")
        return super()._detect(detector, frames)


def test_a_bug_in_a_shared_stage_stops_the_service_at_once(sample_clip: Path, model_path, tmp_path: Path):
    runtime = _BrokenDetectorRuntime(demo_config([sample_clip.as_uri()] * 2, tmp_path, camera={"loop": True}))

    async def main() -> None:
        await asyncio.wait_for(runtime.run(asyncio.Event()), 30)  # never stopped from outside

    started = time.monotonic()
    with pytest.raises(KeyError, match="injected into the detector"):
        asyncio.run(main())
    assert time.monotonic() - started < 15
    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    assert any(line["type"] == "detections" for line in lines)  # what came before is on disk
    assert not any(line.get("event") == "stopped" for line in lines)  # it did not stop cleanly


def test_the_cli_exits_70_on_an_internal_error(sample_clip: Path, model_path, tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\n[output]\ndir = "{tmp_path / "out"}"\n'
                    f'[[camera]]\nid = "cam0"\nurl = "{sample_clip.as_uri()}"\nloop = true\n')
    inject = ("import sys; from dalistream.engine.detector import Detector\n"
              "def broken(self, images, letterboxes): raise KeyError('injected')\n"
              "Detector.__call__ = broken\n"
              "from dalistream.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", inject, "--config", str(site)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 70, done.stderr[-2000:]
    assert "internal error: a stage shared by all cameras failed" in done.stderr and "KeyError: 'injected'" in done.stderr


def test_adaptive_sampling_slows_a_faceless_camera_and_wakes_at_a_face(sample_clip: Path, tmp_path: Path):
    """4 s of a faceless gradient, then 4 s of the sample clip's faces, in one stream: with
    ``pipeline.adaptive`` the camera drops to 1 fps once 1.5 s showed no face, and is back at
    5 fps within one idle interval of the first face."""
    clip = encode(tmp_path / "quiet-then-faces.h264", [(640, 360, 100)])
    with av.open(str(sample_clip)) as source, clip.open("ab") as out:
        for packet in islice(source.demux(video=0), 100):
            out.write(bytes(packet))
    config = demo_config([clip.as_uri()], tmp_path / "out", model={"input": [640, 384]},
                         adaptive=True, adaptive_idle_s=1.5, adaptive_idle_fps=1.0)
    lines, _ = run(config)
    order = [line.get("event", "frame") for line in lines if line["camera"] == "cam0"]
    assert order.count("idle") == 1 and order.count("active") == 1, order
    found = of(lines, "cam0", "detections")
    pts = [line["pts"] for line in found]
    idle_at = next(i for i, line in enumerate(lines) if line.get("event") == "idle")
    active_at = next(i for i, line in enumerate(lines) if line.get("event") == "active")
    quiet = [line["pts"] for line in lines[idle_at:active_at] if line["type"] == "detections"]
    assert all(not line["faces"] for line in found if line["pts"] < 4.0)
    last_busy = [line["pts"] for line in lines[:idle_at] if line["type"] == "detections"]
    assert 1.5 <= last_busy[-1] <= 2.0 and len(last_busy) >= 8, pts  # 5 fps until 1.5 s showed no face
    assert 0 < quiet[0] - last_busy[-1] <= 1.0 and len(quiet) >= 2, (last_busy, quiet)  # the next slot of the idle rate
    assert all(0.8 < b - a < 1.2 for a, b in zip(quiet, quiet[1:])), quiet  # then 1 fps
    woke = next(line for line in found if line["faces"])
    assert 4.0 <= woke["pts"] <= 5.05, pts  # the first face, within one idle interval
    after = [p for p in pts if p > woke["pts"]]
    assert len(after) >= 15 and all(0.15 < b - a < 0.25 for a, b in zip(after, after[1:])), after  # 5 fps again
    assert of(lines, "cam0", "active")[0]["fps"] == 5.0 and of(lines, "cam0", "idle")[0]["fps"] == 1.0
