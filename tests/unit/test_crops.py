"""Face crops written as JPEG files, within their retention, and what the disk refuses said."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dalistream.sinks.crops import CropWriter
from dalistream.tracks.faces import CropWrite

DAY = 86_400.0
NOW = 1_790_000_000.0  # 2026-09-21 (UTC)


def crop(path: str, colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (120, 90)) -> CropWrite:
    pixels = np.empty((*size, 3), np.uint8)
    pixels[:] = colour
    return CropWrite(path, pixels, "cam0", 1)


def writer(out: Path, events: list, **kwargs) -> CropWriter:
    options = {"keep_days": 0, "max_bytes": 10 * 2**20, "clock": lambda: NOW, **kwargs}
    return CropWriter(out, emit=events.extend, **options).start()


def test_crops_are_jpegs_at_their_paths_and_a_better_one_replaces_the_first(tmp_path: Path):
    events: list = []
    crops = writer(tmp_path, events)
    crops.submit([crop("faces/cam0/2026-09-21/1.jpg"), crop("faces/cam0/2026-09-21/2.jpg", size=(64, 48))])
    crops.submit([crop("faces/cam0/2026-09-21/1.jpg", colour=(30, 30, 220))])
    crops.close()
    first = Image.open(tmp_path / "faces/cam0/2026-09-21/1.jpg")
    assert first.format == "JPEG" and first.size == (90, 120)
    assert np.abs(np.asarray(first.convert("RGB")).astype(int) - (30, 30, 220)).mean() < 4  # the second picture
    assert Image.open(tmp_path / "faces/cam0/2026-09-21/2.jpg").size == (48, 64)
    assert (crops.written, crops.lost, events) == (3, 0, [])
    assert not list(tmp_path.rglob("*.partial"))


def test_the_oldest_crops_go_first_beyond_max_bytes_those_of_an_earlier_run_included(tmp_path: Path):
    day = tmp_path / "faces/cam0/2026-09-20"
    day.mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(noise).save(jpeg, "JPEG", quality=90)
    for track in (1, 2):  # an earlier run's, track 1 the older
        (day / f"{track}.jpg").write_bytes(jpeg.getvalue())
        os.utime(day / f"{track}.jpg", (NOW - 100 + track, NOW - 100 + track))
    size = len(jpeg.getvalue())
    crops = writer(tmp_path, [], max_bytes=int(2.5 * size))
    crops.submit([CropWrite("faces/cam0/2026-09-21/3.jpg", noise, "cam0", 3)])
    crops.close()
    assert not (day / "1.jpg").exists() and (day / "2.jpg").exists()
    assert (tmp_path / "faces/cam0/2026-09-21/3.jpg").exists() and crops.deleted == 1


def test_crops_past_keep_days_go_with_their_folders(tmp_path: Path):
    old, recent = tmp_path / "faces/cam0/2026-09-10", tmp_path / "faces/cam0/2026-09-19"
    for folder in (old, recent, tmp_path / "faces/gone/2026-08-01"):
        folder.mkdir(parents=True)
        (folder / "7.jpg").write_bytes(b"\xff\xd8 not checked")
    crops = writer(tmp_path, [], keep_days=7)
    crops.submit([crop("faces/cam0/2026-09-21/1.jpg")])
    crops.close()
    assert not old.exists() and not (tmp_path / "faces/gone").exists() and (recent / "7.jpg").exists()


def test_a_refused_crop_is_counted_and_said_once_crops_are_written_again(tmp_path: Path):
    events: list = []
    (tmp_path / "faces").write_text("a file where the crops' folder goes")
    crops = writer(tmp_path, events)
    crops.submit([crop("faces/cam0/2026-09-21/1.jpg"), crop("faces/cam0/2026-09-21/2.jpg")])
    _until(lambda: crops.lost == 2)
    assert crops.problem is not None and events == []
    (tmp_path / "faces").unlink()
    crops.submit([crop("faces/cam0/2026-09-21/3.jpg")])
    crops.close()
    (gap,) = events
    assert gap["event"] == "crop_gap" and gap["camera"] is None and gap["crops_lost"] == 2, gap
    assert "directory" in gap["reason"].lower() and gap["from"] <= gap["to"]
    assert crops.written == 1 and crops.problem is None


def test_an_outage_still_on_at_the_stop_is_said_then(tmp_path: Path):
    events: list = []
    (tmp_path / "faces").write_text("in the way")
    crops = writer(tmp_path, events)
    crops.submit([crop("faces/cam0/2026-09-21/1.jpg")])
    crops.close()
    assert [(e["event"], e["crops_lost"]) for e in events] == [("crop_gap", 1)]


def test_a_full_queue_loses_crops_without_waiting(tmp_path: Path):
    crops = CropWriter(tmp_path, keep_days=0, max_bytes=2**20, emit=[].extend, queue_bytes=100_000)  # not started: nothing drains
    crops.submit([crop(f"faces/c/2026-09-21/{n}.jpg") for n in range(5)])  # 32 KB each
    assert crops.lost == 2 and crops.problem == "the crop writer is behind (queue full)"


def test_a_bug_in_the_writer_is_kept_for_the_service_to_stop_on(tmp_path: Path):
    crops = writer(tmp_path, [])
    crops.submit([CropWrite("faces/c/2026-09-21/1.jpg", np.zeros((4, 4, 2), np.uint8), "c", 1)])  # not RGB
    crops.close()
    assert crops.error is not None


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
