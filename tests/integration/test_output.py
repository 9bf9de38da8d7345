"""Output that never lies, on real tmpfs mounts: a disk that fills and is freed, one that stays
full, directories that cannot take the output, and face crops on a full disk."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from dalistream.pipeline.runtime import Runtime
from dalistream.sinks.crops import CropWriter
from dalistream.tools.demo import demo_config
from dalistream.tracks.faces import CropWrite

pytestmark = pytest.mark.integration


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: ``tmpfs(size, read_only=False)`` mounts a fresh tmpfs; unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        require(done.returncode == 0, f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system; returns the filler file."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def lines_in(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_a_disk_that_fills_and_is_freed_loses_nothing_and_says_when(sample_clip: Path, tmpfs, model_path):
    out = tmpfs("8m")
    config = demo_config([sample_clip.as_uri()], out)
    runtime = Runtime(config)
    window: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(runtime.run(stop))
        await asyncio.sleep(3.0)
        filler = await asyncio.to_thread(fill, out)
        window.append(time.time())
        await asyncio.sleep(3.0)  # records keep coming: the writer keeps them
        filler.unlink()
        window.append(time.time())
        await asyncio.sleep(2.0)
        stop.set()
        await running

    asyncio.run(main())
    lines = lines_in(out)
    seqs = [line["seq"] for line in lines if line["type"] == "detections"]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 35, seqs  # every record, in order
    (gap,) = [line for line in lines if line.get("event") == "output_gap"]
    assert gap["camera"] is None and gap["records_lost"] == 0 and "space" in gap["reason"].lower(), gap
    assert lines[-1]["event"] == "stopped" and lines[-1]["camera"] is None
    assert all(path.stat().st_size > 0 for path in out.glob("*.jsonl"))  # no empty files left behind
    assert (runtime.records_lost, runtime.output_recovered) == (0, True)


def test_a_disk_that_stays_full_exits_non_zero(sample_clip: Path, tmpfs, model_path, tmp_path: Path):
    out = tmpfs("1m")
    fill(out)
    site = tmp_path / "site.toml"
    site.write_text(
        f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{model_path}"\n[output]\ndir = "{out}"\n'
        f'[[camera]]\nid = "cam0"\nurl = "{sample_clip.as_uri()}"\n'
    )
    done = subprocess.run([sys.executable, "-m", "dalistream", "--config", str(site), "--duration", "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "records were lost and the output never recovered" in done.stderr
    assert "output write failed" in done.stderr and "Traceback" not in done.stderr
    assert not list(out.glob("*.jsonl"))  # nothing written, and no empty files either


@pytest.mark.parametrize("case", ["a file", "read-only"])
def test_an_output_directory_that_cannot_be_written_stops_check_and_start(case: str, tmpfs, model_path, tmp_path: Path):
    if case == "a file":
        out = tmp_path / "out"
        out.write_text("not a directory")
        message = "is not a directory"
    else:
        out = tmpfs("1m", read_only=True) / "records"
        message = "Read-only file system"
    site = tmp_path / "site.toml"
    site.write_text(f'[model]\nonnx = "{model_path}"\n[output]\ndir = "{out}"\n[[camera]]\nid = "a"\nurl = "rtsp://127.0.0.1:9/x"\n')
    for command in (["check", str(site)], ["--config", str(site), "--duration", "1"]):
        done = subprocess.run([sys.executable, "-m", "dalistream", *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "output.dir:" in done.stderr and message in done.stderr and "Traceback" not in done.stderr


def test_face_crops_on_a_full_disk_are_lost_counted_and_said_never_a_crash(tmpfs):
    """The crop writer on a real full file system: crops refused are counted, the service's
    problem says why, and once a crop is written again a ``crop_gap`` event says how many were
    lost and when."""
    out = tmpfs("2m")
    events: list = []
    crops = CropWriter(out, keep_days=0, max_bytes=2**20, emit=events.extend).start()
    picture = np.random.default_rng(0).integers(0, 255, (300, 240, 3), dtype=np.uint8)  # incompressible
    filler = fill(out)
    crops.submit([CropWrite(f"faces/cam0/2026-09-21/{n}.jpg", picture, "cam0", n) for n in range(3)])
    deadline = time.monotonic() + 10
    while crops.lost < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert crops.lost == 3 and crops.written == 0 and "space" in (crops.problem or "").lower()
    assert not list(out.rglob("*.jpg")) and not list(out.rglob("*.partial"))  # nothing half written
    filler.unlink()
    crops.submit([CropWrite("faces/cam0/2026-09-21/9.jpg", picture, "cam0", 9)])
    crops.close()
    (gap,) = events
    assert gap["event"] == "crop_gap" and gap["crops_lost"] == 3 and "space" in gap["reason"].lower(), gap
    assert crops.written == 1 and crops.problem is None and crops.error is None
