"""``calibrate``: frame selection (pure) and a capture from the real GStreamer RTSP server."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from dalistream.tools.calibrate import FrameSelector, thumbnail
from dalistream.cli import main


def _thumb(level: int) -> np.ndarray:
    return np.full((18, 32), level, np.uint8)


def test_quotas_are_spread_across_cameras_and_sum_to_the_request() -> None:
    selector = FrameSelector(["a", "b", "c"], 7, interval_s=0.0)
    taken = {camera: 0 for camera in "abc"}
    for step in range(10):
        for camera in "abc":
            taken[camera] += selector.offer(camera, float(step), _thumb(step * 20))
    assert taken == {"a": 3, "b": 2, "c": 2}
    assert selector.done and not selector.wants("a", 100.0)


def test_frames_closer_than_the_interval_are_not_wanted() -> None:
    selector = FrameSelector(["a"], 3, interval_s=2.0)
    assert selector.offer("a", 10.0, _thumb(0))
    assert not selector.wants("a", 11.9)
    assert not selector.offer("a", 11.9, _thumb(100))
    assert selector.offer("a", 12.0, _thumb(100))
    # A restarted stream (pts back near zero) is a new chance, not a frame from the past.
    assert selector.wants("a", 0.1)


def test_near_duplicates_are_skipped_and_counted() -> None:
    selector = FrameSelector(["a"], 3, interval_s=0.0, min_difference=4.0)
    assert selector.offer("a", 0.0, _thumb(50))
    assert not selector.offer("a", 1.0, _thumb(53))  # differs by 3 levels: same scene
    assert selector.offer("a", 2.0, _thumb(60))
    assert not selector.offer("a", 3.0, _thumb(50))  # a duplicate of the first, not just the last
    assert (selector.kept("a"), selector.duplicates) == (2, 2)


def test_selector_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FrameSelector([], 3, 1.0)
    with pytest.raises(ValueError):
        FrameSelector(["a"], 0, 1.0)


@pytest.mark.integration
def test_calibrate_captures_distinct_frames_from_two_cameras(
    rtsp_server, sample_clip: Path, model_path: Path, tmp_path: Path, capsys
) -> None:
    with av.open(str(sample_clip)) as clip:
        size = (clip.streams.video[0].width, clip.streams.video[0].height)
    server = rtsp_server(2)
    site = tmp_path / "site.toml"
    site.write_text(
        f'[model]\nonnx = "{model_path}"\n'
        + "".join(f'[[camera]]\nid = "cam{i}"\nurl = "{server.url(i)}"\n' for i in range(2)),
        encoding="utf-8",
    )
    out = tmp_path / "calib_data"
    assert main(["calibrate", "--config", str(site), "--frames", "6", "--interval", "0.5", "--timeout", "60", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_camera"] == {"cam0": 3, "cam1": 3} and report["complete"] and report["frames"] == 6
    files = sorted(out.glob("*.jpg"))
    assert [f.name for f in files] == [f"cam{c}-{i:04d}.jpg" for c in range(2) for i in range(1, 4)]
    for camera in ("cam0", "cam1"):
        thumbs = []
        for path in sorted(out.glob(f"{camera}-*.jpg")):
            with av.open(str(path)) as container:
                frame = next(container.decode(video=0))
            assert (frame.width, frame.height) == size  # full resolution, not the letterbox
            thumbs.append(thumbnail(frame.to_ndarray(format="rgb24")).astype(np.float32))
        for i in range(len(thumbs)):
            for j in range(i):
                assert np.mean(np.abs(thumbs[i] - thumbs[j])) > 2.0, (camera, i, j)
