"""Accuracy of the live detection path on an annotated image folder (the ``eval`` command).

Each image goes through the code the service runs on camera frames: the JPEG becomes an
``av.VideoFrame``, :meth:`PyAvDecoder.convert` scales and colour-converts it into its letterbox,
and the service's :class:`~dalistream.engine.detector.Detector` (DALI graph, engine, the model
kind's decoder with batched NMS) returns faces in source pixels. Only the score threshold
differs: it is low (:data:`EVAL_SCORE_THRESHOLD`) so the PR curve reaches high recall.
The detections are then scored with :mod:`dalistream.tools.evaluation`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dalistream.config import ConfigError, ModelConfig
from dalistream.decode.images import ImageError, load_image
from dalistream.tools.evaluation import Detections, GroundTruthError, ImageTruth, evaluate, load_ground_truth
from dalistream.geometry import Letterbox
from dalistream.device import CPU, CPU_PLAN, DevicePlan
from dalistream.engine import model_file
from dalistream.engine.detector import Detector
from dalistream.progress import Progress

EVAL_SCORE_THRESHOLD = 0.02
"""Score threshold while evaluating: low, so that AP sees the whole precision/recall trade-off."""
EVAL_BATCH = 8
"""Images per inference batch."""
LOADERS = 2
"""Threads decoding and converting JPEGs while the previous batch infers."""


class EvaluationError(RuntimeError):
    """The image folder does not match the ground truth (missing image, different size)."""


def detect(
    model: ModelConfig,
    images: Path,
    truth: Sequence[ImageTruth],
    batch_size: int = EVAL_BATCH,
    plan: DevicePlan = CPU_PLAN,
    progress: Progress | None = None,
) -> dict[str, Detections]:
    """Run the live detection path over every annotated image; detections keyed by image name
    (images done so far told to ``progress`` after each batch)."""
    detector = Detector(model, plan, batch_size, score_threshold=EVAL_SCORE_THRESHOLD)

    def load(item: ImageTruth) -> tuple[np.ndarray, Letterbox]:
        path = images / item.name
        if not path.is_file():
            raise EvaluationError(f"image {path} listed in the ground truth is missing")
        try:
            image, letterbox = load_image(path, model.input, detector.pixel_format)
        except ImageError as exc:
            raise EvaluationError(str(exc)) from exc
        if (letterbox.source_width, letterbox.source_height) != (item.width, item.height):
            raise EvaluationError(
                f"{item.name}: image is {letterbox.source_width}x{letterbox.source_height}, "
                f"ground truth says {item.width}x{item.height}"
            )
        return image, letterbox

    detections: dict[str, Detections] = {}
    done = 0
    with ThreadPoolExecutor(LOADERS, thread_name_prefix="eval-load") as pool:
        for batch, loaded in zip(_batches(truth, batch_size), _prefetch(pool, load, truth, batch_size)):
            frames = [image for image, _ in loaded]
            faces = detector(frames, [letterbox for _, letterbox in loaded])
            for item, found in zip(batch, faces):
                detections[item.name] = Detections(found.boxes, found.scores)
            done += len(batch)
            if progress is not None:
                progress.update(done, len(truth))
    return detections


def run(
    model: ModelConfig,
    images: Path,
    gt: Path,
    batch_size: int = EVAL_BATCH,
    plan: DevicePlan = CPU_PLAN,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """AP in percent per setting plus what was measured (the ``eval`` command's JSON report).

    FP16 runs on the GPU; on the CPU it is measured by running the FP16 ONNX file the GPU builds
    from (:func:`~dalistream.engine.model_file`) through ONNX Runtime."""
    if not model.onnx.is_file():
        raise ConfigError(f"model.onnx: {model.onnx} not found")
    file = model_file(model)
    run_model = dataclasses.replace(model, onnx=file, precision="fp32") if model.precision == "fp16" and plan.device == CPU else model
    try:
        truth = load_ground_truth(gt)
    except OSError as exc:
        raise EvaluationError(f"cannot read ground truth {gt}: {exc.strerror}") from exc
    except GroundTruthError as exc:
        raise EvaluationError(f"{gt}: {exc}") from exc
    started = time.monotonic()
    detections = detect(run_model, images, truth, batch_size, plan, progress)
    seconds = time.monotonic() - started
    report: dict[str, Any] = {key: round(value, 2) for key, value in evaluate(truth, detections).items()}
    report.update(
        images=len(truth),
        faces=int(sum(item.boxes.shape[0] for item in truth)),
        kind=model.kind,
        model=str(model.onnx),
        model_file=str(file),
        input=list(model.input),
        precision=model.precision,
        device=str(plan),
        score_threshold=EVAL_SCORE_THRESHOLD,
        nms_iou=model.nms_iou,
        seconds=round(seconds, 1),
    )
    return report


def with_overrides(model: ModelConfig, input_size: tuple[int, int] | None, precision: str | None) -> ModelConfig:
    """``model`` with the command line's ``--input``/``--precision``, validated like the config."""
    changes: dict[str, Any] = {}
    if input_size is not None:
        changes["input"] = input_size
    if precision is not None:
        changes["precision"] = precision
    model = dataclasses.replace(model, **changes)
    model.validate("model")
    return model


def _batches(items: Sequence[ImageTruth], size: int) -> Iterator[Sequence[ImageTruth]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _prefetch(
    pool: ThreadPoolExecutor,
    load: Callable[[ImageTruth], tuple[np.ndarray, Letterbox]],
    items: Sequence[ImageTruth],
    size: int,
) -> Iterator[list[tuple[np.ndarray, Letterbox]]]:
    """Loaded batches in order, the next batch loading while the caller works on the current one."""
    pending = None
    for batch in _batches(items, size):
        future = [pool.submit(load, item) for item in batch]
        if pending is not None:
            yield [f.result() for f in pending]
        pending = future
    if pending is not None:
        yield [f.result() for f in pending]
