"""The analysis stages (decode → sample → DALI → ONNX Runtime → postprocess) on the sample clip
find the faces where the ground truth says they are."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from dalistream.tools.demo import demo_config
from dalistream.tools.groundtruth import recall
from dalistream.ingest.camera import ReceivedAccessUnit
from dalistream.metrics import Latencies, Stages
from dalistream.rtp.sdp import VideoFormat
from dalistream.pipeline.runtime import Analyzer, FrameSource


def test_faces_found_where_the_ground_truth_puts_them(sample_clip: Path, clip_truth, model_path, tmp_path):
    config = demo_config(["rtsp://127.0.0.1/cam0"], tmp_path, max_batch=8)
    stages = Stages()
    source = FrameSource("cam0", config.model.input, detect_fps=5.0, stages=stages)
    analyzer = Analyzer(config, stages, Latencies())
    units: list[ReceivedAccessUnit | VideoFormat] = [VideoFormat("H264", 96, 90_000, (), {})]
    with av.open(str(sample_clip), format="h264") as container:
        for index, packet in enumerate(p for p in container.demux() if p.size):
            units.append(ReceivedAccessUnit(bytes(packet), packet.is_keyframe, index / 25, 0.0, 0.0))
    frames, errors = source.process(units)
    assert errors == 0
    assert len(frames) == len(clip_truth.faces) // 5  # 5 of every 25 frames, by pts
    records = [record for start in range(0, len(frames), 8) for record in analyzer(frames[start:start + 8])]

    result = recall(records, clip_truth, iou=0.5)
    assert result.ratio >= 0.95, result
    assert result.false_positives <= 0.02 * result.total, result
    landmarks = np.array([face["landmarks"] for r in records for face in r["faces"]])
    boxes = np.array([face["box"] for r in records for face in r["faces"]])
    inside = (landmarks[..., 0] >= boxes[:, None, 0]) & (landmarks[..., 0] <= boxes[:, None, 2])
    assert inside.mean() > 0.99, "landmarks should sit inside their face boxes"
