"""The analysis stages (decode → sample → DALI → ONNX Runtime → postprocess) on the sample clip
find the faces where the ground truth says they are."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from dalistream.decode import FrameSpec, PyAvFrameSource, StreamStart
from dalistream.device import CPU_PLAN
from dalistream.ingest import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.engine.detector import Detector
from dalistream.pipeline.runtime import analyse
from dalistream.pipeline.sampling import Sampler
from dalistream.tools.demo import demo_config
from dalistream.tools.groundtruth import recall


def test_faces_found_where_the_ground_truth_puts_them(sample_clip: Path, clip_truth, model_path, tmp_path):
    config = demo_config(["rtsp://127.0.0.1/cam0"], tmp_path, max_batch=8)
    detector = Detector(config.model, CPU_PLAN, max_batch=8)
    source = PyAvFrameSource("cam0", Sampler(5.0), FrameSpec(config.model.input, detector.pixel_format), Stages())
    units: list[ReceivedAccessUnit | StreamStart] = [StreamStart("H264")]
    with av.open(str(sample_clip), format="h264") as container:
        for index, packet in enumerate(p for p in container.demux() if p.size):
            units.append(ReceivedAccessUnit(bytes(packet), packet.is_keyframe, index / 25, 0.0, 0.0))
    decoded, rest = source.process(units), source.finish()
    assert (decoded.errors, decoded.corrupt, rest.errors, rest.corrupt) == (0, 0, 0, 0)
    frames = decoded.frames + rest.frames
    assert len(frames) == len(clip_truth.faces) // 5  # 5 of every 25 frames, by pts
    records = [record for start in range(0, len(frames), 8) for record in analyse(detector, frames[start:start + 8])]

    result = recall(records, clip_truth, iou=0.5)
    assert result.ratio >= 0.95, result
    assert result.false_positives <= 0.02 * result.total, result
    landmarks = np.array([face["landmarks"] for r in records for face in r["faces"]])
    boxes = np.array([face["box"] for r in records for face in r["faces"]])
    inside = (landmarks[..., 0] >= boxes[:, None, 0]) & (landmarks[..., 0] <= boxes[:, None, 2])
    assert inside.mean() > 0.99, "landmarks should sit inside their face boxes"
