import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dalistream import records
from dalistream.models.faces import Faces
from dalistream.sinks import JsonlWriter


def _faces(n: int) -> Faces:
    boxes = np.array([[10.04, 20.06, 110.0, 140.0]] * n, dtype=np.float32)
    scores = np.linspace(0.99, 0.6, n, dtype=np.float32)
    landmarks = np.tile(np.arange(10, dtype=np.float32).reshape(1, 5, 2), (n, 1, 1))
    return Faces(boxes, scores, landmarks)


def test_detections_record_matches_schema_v1():
    record = records.detections(
        camera="cam0", seq=7, pts=1.2345678, wallclock=1_790_000_000.25, width=1920, height=1080,
        latency_ms=12.3456, faces=_faces(2),
    )
    assert list(record) == ["v", "type", "camera", "seq", "pts", "wallclock", "width", "height", "latency_ms", "faces"]
    assert record["v"] == 1 and record["type"] == "detections"
    assert record["wallclock"] == "2026-09-21T14:13:20.250Z"
    face = record["faces"][0]
    assert face["box"] == [10.0, 20.1, 110.0, 140.0]
    assert len(face["landmarks"]) == 5 and face["landmarks"][1] == [2.0, 3.0]
    assert record["faces"][0]["score"] > record["faces"][1]["score"]
    json.dumps(record)


def test_empty_frame_still_gives_a_record():
    record = records.detections(camera="c", seq=0, pts=0.0, wallclock=0.0, width=4, height=4, latency_ms=1.0, faces=_faces(0))
    assert record["faces"] == []


def test_event_record():
    record = records.event(camera="cam1", event="disconnected", wallclock=0.0, reason="closed by server")
    assert record == {"v": 1, "type": "event", "camera": "cam1", "event": "disconnected",
                      "wallclock": "1970-01-01T00:00:00.000Z", "reason": "closed by server"}


def test_rotates_by_size_and_never_overwrites(tmp_path: Path):
    writer = JsonlWriter(tmp_path, "t", rotate_bytes=100, clock=lambda: 1_790_000_000.0)
    for i in range(10):
        writer.write([{"i": i, "pad": "x" * 40}])
    writer.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 5 and files == sorted(writer.paths)
    lines = [json.loads(line) for f in writer.paths for line in f.read_text().splitlines()]
    assert [line["i"] for line in lines] == list(range(10))
    # All files share one start second: numeric suffixes keep them apart.
    assert [p.name for p in writer.paths[:2]] == ["t-20260921T141320Z.jsonl", "t-20260921T141320Z-1.jsonl"]


def test_rotates_when_the_utc_day_changes(tmp_path: Path):
    now = [datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC).timestamp()]
    writer = JsonlWriter(tmp_path, "d", rotate_bytes=1 << 20, clock=lambda: now[0])
    writer.write([{"a": 1}])
    now[0] += 2
    writer.write([{"a": 2}])
    writer.close()
    assert [p.name for p in writer.paths] == ["d-20261121T235959Z.jsonl", "d-20261122T000001Z.jsonl"]


def test_write_failure_is_reported_and_the_next_write_recovers(tmp_path: Path):
    # A real kernel limit (RLIMIT_FSIZE) makes the disk refuse writes, in a child process.
    script = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from dalistream.sinks import JsonlWriter, SinkError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = JsonlWriter(Path({str(tmp_path)!r}), "f", rotate_bytes=1 << 30)
        writer.write([{{"ok": 1}}])
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            writer.write([{{"big": "x" * 500}}, {{"big": "y"}}])
        except SinkError as exc:
            print("ERR", exc)
        writer.write([{{"ok": 2}}])
        writer.close()
        print("FILES", len(writer.paths))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "lost 2 records" in out
    assert "FILES 2" in out
    lines = [json.loads(line) for f in tmp_path.iterdir() for line in f.read_text().splitlines()]
    assert sorted(line["ok"] for line in lines if "ok" in line) == [1, 2]


def test_no_empty_files_after_failed_writes(tmp_path: Path):
    """A file the disk takes nothing into is removed, not left empty (RLIMIT_FSIZE in a child)."""
    script = textwrap.dedent(f"""
import resource, signal
from pathlib import Path
from dalistream.sinks import JsonlWriter, SinkError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
writer = JsonlWriter(Path({str(tmp_path)!r}), "f", rotate_bytes=1 << 30)
for _ in range(3):
    try:
        writer.write([{{"x": 1}}])
    except SinkError as exc:
        print("ERR", exc)
print("FILES", len(writer.paths))
""")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.count("ERR") == 3 and "FILES 0" in out
    assert not list(tmp_path.iterdir())
