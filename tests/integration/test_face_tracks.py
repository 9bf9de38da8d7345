"""Faces as tracks through the real pipeline: the tracks clip (walkers that cross and leave the
frame) scored against its identities, with the events and full-resolution crops it makes; a
stream whose picture changes size with more faces than a camera may track; a camera moved
between workers; a camera that goes silent and comes back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import defaultdict
from datetime import datetime
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from pipeline_runs import run_pipeline
from dalistream.pipeline.runtime import Runtime
from dalistream.tools.demo import demo_config
from dalistream.tools.tracking import TrackTruth, evaluate

pytestmark = pytest.mark.integration


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def test_the_tracks_clip_keeps_every_identity_through_crossings_with_events_and_crops(tracks_clip: Path, model_path, tmp_path: Path):
    config = demo_config([tracks_clip.as_uri()], tmp_path, camera={"pace": "fast"})
    lines, runtime = run_pipeline(config)
    detections = [line for line in lines if line["type"] == "detections"]
    assert len(detections) == 100 and all("track" in face for line in detections for face in line["faces"])

    scores = evaluate(detections, TrackTruth.load(tracks_clip.with_suffix(".gt.json")))
    assert scores["idf1"] >= 0.95 and scores["num_switches"] == 0 and scores["switches_at_crossings"] == 0, scores
    assert scores["recall"] >= 0.95 and scores["num_unique_objects"] == 6, scores

    appeared, left = events(lines, "face_appeared"), events(lines, "face_left")
    tracked = {face["track"] for line in detections for face in line["faces"] if face["track"] is not None}
    assert [e["track"] for e in appeared] == sorted(tracked) == sorted(e["track"] for e in left)
    boxes = defaultdict(list)
    for line in detections:
        for face in line["faces"]:
            boxes[face["track"]].append(face["box"])
    for event in appeared:
        first = next(line for line in detections if any(face["track"] == event["track"] for face in line["faces"]))
        assert event["pts"] == first["pts"] and event["box"] in boxes[event["track"]]
    reasons = sorted(e["reason"] for e in left)
    assert reasons.count("missed") == 4 and set(reasons) <= {"missed", "camera_stopped", "service_stopped"}, reasons  # 5 and 6 stay to the end
    assert lines.index(left[-1]) < lines.index(events(lines, "stopped")[0])  # faces in view leave before the end

    for event in left:
        heights = [y2 - y1 for _, y1, _, y2 in boxes[event["track"]]]
        assert event["frames"] == len(heights) and 0 < event["duration_s"] <= 20.0 and event["score"] > 0.9
        crop = Image.open(tmp_path / event["crop"])
        assert crop.format == "JPEG"
        # Full resolution with its margin: taller than the face was in the 1080p frame, where
        # the 960x544 letterboxed copy had it at half that.
        assert crop.height >= 1.2 * np.median(heights), (event, crop.size)
        assert event["crop"].startswith(f"faces/cam0/{event['first'][:10]}/")
    assert runtime.stages.snapshot()["track"].items == 100


def sized_stream(sample_clip: Path, out: Path) -> Path:
    """One raw H.264 stream of the sample clip's first second at 1920x1080, then its next second
    scaled to 1280x720 (a new SPS at an IDR, as a camera changing resolution sends)."""
    with av.open(str(sample_clip)) as source:
        frames = [frame.to_ndarray(format="rgb24") for frame in islice(source.decode(video=0), 50)]
    with out.open("wb") as stream:
        for size, part in (((1920, 1080), frames[:25]), ((1280, 720), frames[25:])):
            context = av.CodecContext.create("libx264", "w")
            context.width, context.height, context.pix_fmt = *size, "yuv420p"
            context.time_base, context.framerate = Fraction(1, 25), Fraction(25)
            context.options = {"preset": "ultrafast", "x264-params": "keyint=25:bframes=0:repeat-headers=1"}
            for index, rgb in enumerate(part):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width=size[0], height=size[1], format="yuv420p")
                frame.pts = index
                stream.write(b"".join(bytes(packet) for packet in context.encode(frame)))
            stream.write(b"".join(bytes(packet) for packet in context.encode(None)))
    return out


def test_a_new_picture_size_ends_the_tracks_and_faces_beyond_the_bound_are_counted(sample_clip: Path, model_path, tmp_path: Path):
    clip = sized_stream(sample_clip, tmp_path / "sized.h264")
    config = demo_config([clip.as_uri()], tmp_path / "out", camera={"pace": "fast"})
    config = dataclasses.replace(config, tracks=dataclasses.replace(config.tracks, max_per_camera=3))
    lines, _ = run_pipeline(config)
    detections = [line for line in lines if line["type"] == "detections"]
    sizes = [(line["width"], line["height"]) for line in detections]
    assert sizes[0] == (1920, 1080) and sizes[-1] == (1280, 720)
    changed = next(i for i, size in enumerate(sizes) if size == (1280, 720))
    before = {face["track"] for line in detections[:changed] for face in line["faces"]} - {None}
    after = {face["track"] for line in detections[changed:] for face in line["faces"]} - {None}
    assert len(before) == 3 and len(after) == 3 and min(after) > max(before), (before, after)
    ended = [e for e in events(lines, "face_left") if e["reason"] == "size_changed"]
    assert sorted(e["track"] for e in ended) == sorted(before)
    assert all(lines.index(e) > lines.index(detections[changed - 1]) for e in ended)
    assert all(sum(face["track"] is None for face in line["faces"]) == len(line["faces"]) - 3 for line in detections
               if len(line["faces"]) > 3)
    untracked = events(lines, "faces_untracked")
    assert untracked and {e["reason"] for e in untracked} == {"max_per_camera"}
    assert sum(e["faces"] for e in untracked) == sum(max(0, len(line["faces"]) - 3) for line in detections)
    assert json.dumps(lines)  # every record is plain JSON


def test_a_camera_moved_away_ends_its_tracks_as_moved_and_continues_their_numbering_where_it_lands(sample_clip: Path, model_path, tmp_path: Path):
    """What a cluster worker does when its camera moves (remove with ``moved_to``, add on the
    next worker with the ids it reached): here twice on one runtime."""
    config = demo_config([sample_clip.as_uri()], tmp_path, camera={"loop": True}, model={"input": [640, 384]})
    camera = config.camera[0]
    reports = []

    async def scenario() -> None:
        await asyncio.sleep(4.0)
        reports.append(await runtime.remove_camera("cam0", moved_to="w2"))
        runtime.add_camera(camera, first_seq=reports[0].next_seq, first_track=reports[0].next_track, event="moved",
                           **{"from": "w1", "to": "w2"})
        await asyncio.sleep(3.0)
        reports.append(await runtime.remove_camera("cam0"))
        stop.set()

    runtime = Runtime(config)
    stop = asyncio.Event()

    async def main() -> None:
        running = asyncio.create_task(runtime.run(stop))
        await scenario()
        await running

    asyncio.run(main())
    lines = [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]
    moved_at = next(i for i, line in enumerate(lines) if line.get("event") == "moved")
    before = {face["track"] for line in lines[:moved_at] if line["type"] == "detections" for face in line["faces"]} - {None}
    after = {face["track"] for line in lines[moved_at:] if line["type"] == "detections" for face in line["faces"]} - {None}
    assert before and after and min(after) >= reports[0].next_track > max(before), (before, after, reports[0].next_track)
    left = events(lines, "face_left")
    assert {e["track"] for e in left if e["reason"] == "moved"} == {t for t in before if t not in {
        e["track"] for e in left if e["reason"] == "missed"}}
    assert {e["reason"] for e in left if e["track"] in after} <= {"camera_stopped", "missed"}
    assert reports[1].next_track > max(after)


def test_faces_of_a_camera_gone_silent_leave_and_its_ids_go_on_after_it_reconnects(rtsp_server, model_path, tmp_path: Path):
    server = rtsp_server(1)
    config = demo_config([server.url(0)], tmp_path, model={"input": [640, 384]})
    stopped_at: list[float] = []

    async def scenario() -> None:
        await asyncio.sleep(5.0)
        await asyncio.to_thread(server.stop)
        stopped_at.append(time.time())
        await asyncio.sleep(4.0)
        await asyncio.to_thread(server.start)

    lines, _ = run_pipeline(config, 16.0, scenario)
    cut = next(i for i, line in enumerate(lines) if line.get("event") == "disconnected")
    before = {face["track"] for line in lines[:cut] if line["type"] == "detections" for face in line["faces"]} - {None}
    after = {face["track"] for line in lines[cut:] if line["type"] == "detections" for face in line["faces"]} - {None}
    assert len(before) >= 4 and after and min(after) > max(before), (before, after)
    in_view = before - {e["track"] for e in events(lines[:cut], "face_left")}
    left = {e["track"]: e for e in events(lines[cut:], "face_left")}
    assert in_view and all(left[track]["reason"] == "missed" for track in in_view), (in_view, left)
    # Within max_missed_s and a second of the last access unit (and the next report), not at
    # the next frame: none came for 4 s.
    assert all(stamp(left[track]) - stopped_at[0] < 3.5 for track in in_view), [stamp(e) - stopped_at[0] for e in left.values()]


def stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["wallclock"].replace("Z", "+00:00")).timestamp()
