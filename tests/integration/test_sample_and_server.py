"""The generated sample clip, and the GStreamer RTSP server that loops it.

The clip comes from ``dalistream/tools/sample.py``; the server is ``dalistream/tools/rtsp_server.py`` run under
Debian's Python by the ``rtsp_server`` fixture (tests/conftest.py), read back here with PyAV.
"""

from __future__ import annotations

import json
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest

from dalistream.tools.demo import SAMPLE_TRUTH

FPS = 25
FRAMES = 500
GOP = 50
READ_SECONDS = 2


def test_sample_stream_layout(sample_clip: Path) -> None:
    """500 1080p frames, an IDR exactly every 50 frames, and no B-frames."""
    with av.open(str(sample_clip)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == FRAMES
    assert {(frame.width, frame.height) for frame in frames} == {(1920, 1080)}
    assert [index for index, frame in enumerate(frames) if frame.key_frame] == list(range(0, FRAMES, GOP))
    assert all(frame.pict_type != av.video.frame.PictureType.B for frame in frames)


def test_sample_ground_truth(sample_clip: Path) -> None:
    """One list of face boxes per frame, inside the frame, face heights spanning ~70 to ~350 px."""
    ground_truth = json.loads(SAMPLE_TRUTH.read_text())
    assert (ground_truth["width"], ground_truth["height"], ground_truth["fps"]) == (1920, 1080, FPS)
    assert (ground_truth["frames"], ground_truth["gop"]) == (FRAMES, GOP)
    assert len(ground_truth["faces"]) == FRAMES
    boxes = np.array(ground_truth["faces"], dtype=np.float64)  # (frames, faces, 4)
    assert boxes.ndim == 3 and boxes.shape[1] >= 4
    x1, y1, x2, y2 = np.moveaxis(boxes, -1, 0)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 1920).all() and (y2 <= 1080).all()
    heights = y2 - y1
    assert (x2 > x1).all() and (heights > 0).all()
    assert 60 <= heights.min() <= 80 and 320 <= heights.max() <= 360


def reference_frames(clip: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``clip``, decoded to YUV planes."""
    with av.open(str(clip)) as container:
        return [frame.to_ndarray() for _, frame in zip(range(count), container.decode(video=0))]


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_server_streams_file_with_frame_timestamps(rtsp_server, sample_clip: Path, transport: str) -> None:
    """Packets step by exactly 1/25 s, and the frame at pts t is file frame round(25 t) mod 500."""
    server = rtsp_server(2)
    pts_s: list[Fraction] = []
    decoded: dict[int, np.ndarray] = {}
    with av.open(server.url(0), options={"rtsp_transport": transport}, timeout=10) as container:
        stream = container.streams.video[0]
        # A bounded read: a server with broken timestamps sends unpaced, never-ending packets.
        for packet in islice(container.demux(stream), READ_SECONDS * FPS + 1):
            # FFmpeg hands the very first access unit over without a pts; it is still decoded.
            if packet.pts is not None:
                pts_s.append(packet.pts * packet.time_base)
            for frame in packet.decode():
                assert (frame.width, frame.height) == (1920, 1080)
                if frame.pts is not None:
                    decoded[round(frame.pts * frame.time_base * FPS)] = frame.to_ndarray()

    steps = {later - earlier for earlier, later in zip(pts_s, pts_s[1:])}
    assert steps == {Fraction(1, FPS)}, f"pts steps {sorted(steps)}"
    assert len(pts_s) >= READ_SECONDS * FPS - 1
    assert len(decoded) >= READ_SECONDS * FPS - 1
    reference = reference_frames(sample_clip, max(decoded) + 1)
    mismatched = [index for index, planes in decoded.items() if not np.array_equal(planes, reference[index % FRAMES])]
    assert not mismatched, f"frames differ from the file at indices {mismatched[:10]}"
