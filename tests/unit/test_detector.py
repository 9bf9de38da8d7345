"""The one detector object gives exactly what its parts give when wired by hand, as the service,
``eval`` and the scripts each used to wire them."""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import av
import numpy as np

from dalistream.config import ModelConfig
from dalistream.decode import PyAvDecoder
from dalistream.device import CPU_PLAN
from dalistream.engine.onnxruntime import OnnxRuntimeEngine
from dalistream.geometry import Letterbox
from dalistream.metrics import Stages
from dalistream.engine.detector import Detector
from dalistream.models.kinds import input_convention, output_decoder
from dalistream.engine.preprocess import Preprocessor


def letterboxed_frames(clip: Path, packets: int, every: int, input_size: tuple[int, int]) -> tuple[list[np.ndarray], Letterbox]:
    """Every ``every``-th frame of the clip's first ``packets``, scaled into ``input_size``."""
    decoder = PyAvDecoder("H264")
    with av.open(str(clip), format="h264") as container:
        frames = [f for i, p in enumerate(islice(container.demux(), packets)) if p.size for f in decoder.decode(bytes(p), i)][::every]
    letterbox = Letterbox.fit(frames[0].width, frames[0].height, *input_size)
    return [PyAvDecoder.convert(f, letterbox, "bgr24") for f in frames], letterbox


def test_detector_equals_its_parts_wired_by_hand(sample_clip: Path, model_path: Path) -> None:
    model = ModelConfig(onnx=model_path, input=(640, 384))
    images, letterbox = letterboxed_frames(sample_clip, 60, 10, model.input)
    assert len(images) == 6

    convention = input_convention(model.kind)
    preprocess = Preprocessor(*model.input, 4, mean=convention.mean, std=convention.std)
    engine = OnnxRuntimeEngine(model_path)
    by_hand = output_decoder(model.kind, *model.input, model.score_threshold, model.nms_iou)
    expected = [faces for start in (0, 4) for faces in by_hand(engine(preprocess(images[start:start + 4])), [letterbox] * len(images[start:start + 4]))]

    stages = Stages()
    detector = Detector(model, CPU_PLAN, 4, stages=stages)
    found = [faces for start in (0, 4) for faces in detector(images[start:start + 4], [letterbox] * len(images[start:start + 4]))]

    assert sum(len(f.scores) for f in found) >= 20  # five faces a frame in this clip
    for mine, theirs in zip(found, expected, strict=True):
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        np.testing.assert_array_equal(mine.scores, theirs.scores)
        np.testing.assert_array_equal(mine.landmarks, theirs.landmarks)
    assert {name: cost.items for name, cost in stages.snapshot().items()} == {"dali_graph": 6, "inference": 6, "postprocess": 6}


def test_tensor_is_the_caller_s_and_infer_decode_split_the_call(sample_clip: Path, model_path: Path) -> None:
    model = ModelConfig(onnx=model_path, input=(320, 192))
    detector = Detector(model, CPU_PLAN, 2)
    images = [np.full((180, 320, 3), level, np.uint8) for level in (40, 200)]
    first = detector.tensor(images)
    kept = first.copy()
    detector.tensor(images[::-1])  # the graph reuses its buffer; the copy handed out does not change
    np.testing.assert_array_equal(first, kept)
    letterboxes = [Letterbox.fit(320, 180, 320, 192)] * 2
    split = detector.decode(detector.infer(first), letterboxes)
    whole = detector(images, letterboxes)
    for a, b in zip(split, whole, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_batches_from_several_threads_are_pipelined_and_each_gets_its_own_faces(sample_clip: Path, model_path: Path) -> None:
    """Two input buffers, three threads: every batch's faces are the ones it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    model = ModelConfig(onnx=model_path, input=(640, 384))
    images, letterbox = letterboxed_frames(sample_clip, 90, 6, model.input)
    batches = [[image] * 2 for image in images]
    alone = Detector(model, CPU_PLAN, 2)
    expected = [alone(images, [letterbox] * 2) for images in batches]
    spans: list[tuple[float, float]] = []  # (start, end) of every stage of every batch

    def ended(_: str, __: int, wall_s: float) -> None:
        now = time.perf_counter()
        spans.append((now - wall_s, now))

    stages = Stages(observe=ended)
    shared = Detector(model, CPU_PLAN, 2, stages=stages, buffers=2)
    with ThreadPoolExecutor(3) as pool:
        found = list(pool.map(lambda images: shared(images, [letterbox] * 2), batches * 2))
    # one batch's stages run one after another, so time spent in two stages at once is two
    # batches overlapping: the next one preprocessed while this one infers
    overlap_s = sum(end - start for start, end in spans) - _union_s(spans)
    assert overlap_s > 0.005, f"batches overlapped for {1e3 * overlap_s:.2f} ms only: not pipelined"
    assert sum(len(faces.scores) for batch in expected for faces in batch) >= 5 * len(batches)
    for mine, theirs in zip(found, expected * 2, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
    assert stages.snapshot()["inference"].items == 2 * 2 * len(batches)


def _union_s(spans: list[tuple[float, float]]) -> float:
    """The length of time covered by at least one of ``spans``."""
    covered, reach = 0.0, -float("inf")
    for start, end in sorted(spans):
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered
