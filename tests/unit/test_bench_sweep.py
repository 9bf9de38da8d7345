"""The measured window of a bench run and the sweep's verdicts, on records written by hand."""

import numpy as np
import pytest

from dalistream import records
from dalistream.models.faces import Faces
from dalistream.tools.bench import held, table
from dalistream.tools.demo import window_stats


NO_FACES = Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


class Usage:
    def __init__(self, start, end, memory=None, busy_ms=({}, {})):
        self.start, self.end = start, end
        self.memory = memory or {}  # a CPU run has none
        self.busy_ms = busy_ms


def detections(camera, arrival, latency_ms):
    return records.detections(camera=camera, seq=0, pts=arrival, wallclock=arrival, width=1920, height=1080,
                              latency_ms=latency_ms, faces=NO_FACES)


def test_the_window_counts_only_what_arrived_in_it():
    lines = [detections("a", 1000 + i * 0.2, 50 + i) for i in range(60)]  # 12 s at 5 fps
    lines += [detections("b", 1002 + i * 0.25, 80) for i in range(40)]  # 4 fps from 2 s on
    lines += [records.event(camera="b", event="dropped", wallclock=1001.0, frames=3, reason="queue_full"),  # warm-up
              records.event(camera="b", event="dropped", wallclock=1006.0, frames=2, reason="queue_full"),
              records.event(camera="a", event="gap", wallclock=1007.0, frames_lost=4),
              records.event(camera=None, event="stopped", wallclock=1012.0)]
    window = window_stats(lines, Usage((1002.0, 10.0, 1.0), (1012.0, 25.0, 1.5)), 5.0)
    assert window["seconds"] == 10.0 and window["cameras"] == 2
    assert window["analysed_fps_min"] == 4.0 and window["analysed_fps_mean"] == 4.5
    assert (window["dropped"], window["frames_lost"]) == (2, 4)
    assert window["cpu_percent"] == 150.0 and window["rtsp_server_cpu_percent"] == 5.0
    assert 80 <= window["latency_p50_ms"] <= window["latency_p99_ms"] <= 109
    assert not any(key.endswith("_stream_busy_percent") or key.startswith("gpu_") for key in window)


def test_a_gpu_window_has_its_memory_and_each_stream_s_busy_share():
    busy = ({"inference": 1000.0, "postprocess": 500.0}, {"preprocess": 900.0, "inference": 6000.0, "postprocess": 2500.0})
    memory = {"gpu_memory_used_mib": 3000, "gpu_memory_total_mib": 143000}
    window = window_stats([detections("a", 1003.0, 40)], Usage((1002.0, 10.0, 0.0), (1012.0, 12.0, 0.0), memory, busy), 5.0)
    assert window["gpu_memory_used_mib"] == 3000
    assert (window["preprocess_stream_busy_percent"], window["inference_stream_busy_percent"], window["postprocess_stream_busy_percent"]) == (9.0, 50.0, 20.0)


@pytest.mark.parametrize(("change", "expected"), [
    ({}, True),
    ({"analysed_fps_min": 4.9}, False),
    ({"dropped": 1}, False),
    ({"frames_lost": 1}, False),
    ({"latency_p99_ms": 301.0}, False),
])
def test_held_needs_the_rate_no_loss_and_the_latency(change, expected):
    window = {"detect_fps": 5.0, "analysed_fps_min": 4.96, "dropped": 0, "frames_lost": 0, "latency_p99_ms": 250.0}
    assert held({**window, **change}) is expected


def test_the_table_has_a_row_per_count_and_the_verdict():
    row = {"cameras": 4, "analysed_fps_min": 5.0, "analysed_fps_mean": 5.0, "dropped": 0, "frames_lost": 0,
           "latency_p50_ms": 61.2, "latency_p99_ms": 140.0, "cpu_percent": 96.0, "rtsp_server_cpu_percent": 4.2, "held": True}
    text = table({"rows": [row, {**row, "cameras": 6, "held": False}], "held": 4})
    assert text.splitlines()[2] == "| 4 | 5.00 | 5.00 | 0 | 0 | 61 | 140 | 96 | 4.2 | True |"
    assert len(text.splitlines()) == 5 and text.endswith("held: 4 cameras")
