"""One face detector: the model's input convention, the DALI graph, the engine and the output
decoder, built together once from ``[model]`` and the device plan.

The service, ``eval``, ``calibrate``/``build`` tooling, ``bench`` and the measuring scripts all
detect through this object, so what they measure is what the service runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dalistream.config import ModelConfig
from dalistream.device import DevicePlan
from dalistream.engine import create_engine
from dalistream.geometry import Letterbox
from dalistream.metrics import Stages
from dalistream.models.arrays import to_host
from dalistream.models.faces import Faces
from dalistream.models.kinds import input_convention, output_decoder
from dalistream.engine.preprocess import Preprocessor
from dalistream.engine.schedule import BatchSchedule, Sequencer, Step
from dalistream.engine.streams import stage_streams


class Detector:
    """Frames (HWC uint8, :attr:`pixel_format`) in, faces in source pixels out: on the CPU,
    NumPy frames already scaled into their letterbox; on the GPU, CuPy frames at any size,
    scaled, normalised, inferred and reduced to faces on the device (only faces come back).

    ``score_threshold`` overrides the model's (``eval`` lowers it to see the whole PR curve).
    Each call measures its stages (``dali_graph``, ``inference``, ``postprocess``) into
    ``stages``. Calls may come from several threads and are pipelined as
    :mod:`~dalistream.engine.schedule` lays out: ``buffers`` DALI graphs, each its own
    output buffer (the model input), taken in turn, so with two the next batch is
    preprocessed while one infers and another is reduced to faces, each stage on its own
    stream on the GPU (:mod:`~dalistream.engine.streams`). What leaves this object (faces,
    :meth:`tensor`'s copy) is the caller's. The single-stage methods (:meth:`tensor`,
    :meth:`infer`, :meth:`decode`) are for one thread timing stages, not alongside calls.
    """

    def __init__(
        self,
        model: ModelConfig,
        plan: DevicePlan,
        max_batch: int,
        *,
        score_threshold: float | None = None,
        stages: Stages | None = None,
        buffers: int = 1,
    ) -> None:
        width, height = model.input
        self.model = model
        self.device = plan.device
        self.max_batch = max_batch
        self.convention = input_convention(model.kind)
        self._graphs = [
            Preprocessor(width, height, max_batch, mean=self.convention.mean, std=self.convention.std, device=plan.device)
            for _ in range(buffers)
        ]
        self._engine = create_engine(model, plan.device, max_batch)
        threshold = model.score_threshold if score_threshold is None else score_threshold
        self._decoder = output_decoder(model.kind, width, height, threshold, model.nms_iou)
        self._stages = stages if stages is not None else Stages()
        self.streams = stage_streams(plan.device, buffers)
        self._batches = Sequencer(BatchSchedule(buffers), self.streams)

    @property
    def input_size(self) -> tuple[int, int]:
        """The model input, width and height."""
        return self.model.input

    @property
    def pixel_format(self) -> str:
        """What frames must be converted to: ``"bgr24"`` or ``"rgb24"``."""
        return self.convention.pixel_format

    def warm_up(self) -> None:
        """Run a blank batch of the largest size through each graph: the first runs allocate
        buffers and pick kernels (hundreds of ms), better before any camera's frames wait."""
        width, height = self.input_size
        blank = np.zeros((height, width, 3), np.uint8)  # copied to the device by a GPU graph
        for _ in self._graphs:
            self([blank] * self.max_batch, [Letterbox.fit(width, height, width, height)] * self.max_batch)

    def __call__(self, images: Sequence[np.ndarray], letterboxes: Sequence[Letterbox]) -> list[Faces]:
        """Faces per image; ``letterboxes[i]`` says where ``images[i]`` came from."""
        n = len(images)

        def preprocess(step: Step, _: None) -> object:
            with self._stages.measure("dali_graph", n):
                return self._graphs[step.buffer](images, letterboxes)

        def infer(_: Step, tensor: object) -> Mapping[str, object]:
            with self._stages.measure("inference", n):
                return self._engine(tensor)

        return self._batches(preprocess, infer, lambda _, outputs: self.decode(outputs, letterboxes))

    def tensor(self, images: Sequence[Any], letterboxes: Sequence[Letterbox] | None = None, *, copy: bool = True) -> Any:
        """The model input for ``images``, a NumPy copy the caller owns (for tools that time stages).

        Where the graph scales (the GPU), ``letterboxes`` says what each image is scaled to
        (default: each fitted into the input). ``copy=False`` returns the graph's own output
        (a CuPy array on the GPU), valid only until this detector's next call: for a single
        thread timing the graph alone.
        """
        graph = self._graphs[0]
        if graph.scale and letterboxes is None:
            letterboxes = [Letterbox.fit(image.shape[1], image.shape[0], *self.input_size) for image in images]
        with self._stages.measure("dali_graph", len(images)):
            tensor = graph(images, letterboxes)
            if not copy:
                return tensor
            host = to_host(tensor)  # a copy already when it comes from the device
            return host.copy() if host is tensor else host

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """The engine alone on a prepared input."""
        with self._stages.measure("inference", len(tensor)):
            return self._engine(tensor)

    def decode(self, outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Letterbox]) -> list[Faces]:
        """The output decoder (threshold, boxes, NMS) alone, back to source pixels."""
        with self._stages.measure("postprocess", len(letterboxes)):
            return self._decoder(outputs, letterboxes)
