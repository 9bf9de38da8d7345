"""Runs the DALI letterbox graph on a batch of frames (the graph lives in ``graphs/``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dalistream import dali
from dalistream.geometry import Letterbox
from dalistream.graphs import letterbox_normalize
from dalistream.graphs.letterbox import EXTENTS, FRAMES, HEIGHTS, WIDTHS
from dalistream.models.arrays import array_module

_PLACEHOLDER = np.zeros((1, 1, 3), np.uint8)  # fills a batch up to its fixed size


class Preprocessor:
    """Builds the letterbox graph once and turns frames into the model's input tensor.

    ``mean`` and ``std`` are the model's input convention, per channel of the frames fed.
    On the CPU, frames are NumPy arrays already scaled to their letterbox content size and
    the result is a NumPy array; on the GPU, frames are CuPy arrays (or host arrays, copied
    up) at any size, scaled in the graph (``scale``, the GPU's default; the CPU graph can
    scale too, through the very same code with NumPy arrays), and the result is a CuPy array
    on the device (no host round trip), ready in the order of CuPy's current stream (the
    detector's preprocess stream). Either way the result is a view of DALI's output (no
    copy): it stays valid until the next call, so the caller must be done with it (inference)
    before calling again; :class:`~dalistream.engine.detector.Detector` keeps that rule.

    Frames to scale are copied into one dense batch buffer of this preprocessor's (the size
    of the largest frame; a smaller frame's sample is filled out by repeating its last row and
    column), which DALI reads where it is: DALI copies a *list* of separate device arrays into
    a batch of its own before it runs, so that one copy is made here instead, on the caller's
    stream, into memory kept from call to call.

    The graph always runs a full batch of ``max_batch`` samples, the missing ones a 1×1
    placeholder, and only the real ones are returned: fed batches of varying size, DALI 2.4's
    CPU graph grows its memory without bound (measured: 370 → 1,200 MB RSS in 40 s of random
    batch sizes 1–8, flat at a fixed size; compare NVIDIA/DALI#6153). A placeholder costs
    about 0.4 ms (it still writes one padded output sample).
    """

    def __init__(
        self,
        input_width: int,
        input_height: int,
        max_batch: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        device: str = "cpu",
        scale: bool | None = None,
        num_threads: int = 1,
    ) -> None:
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        self.device = device
        self.scale = device == "gpu" if scale is None else scale
        self.input_width = input_width
        self.input_height = input_height
        self.max_batch = max_batch
        self._pipe = dali.build(
            letterbox_normalize,
            device_id=0 if device == "gpu" else None,
            device=device,
            input_width=input_width,
            input_height=input_height,
            mean=mean,
            std=std,
            scale=self.scale,
            batch_size=max_batch,
            num_threads=num_threads,
        )
        self._batch: Any = None  # the dense batch frames are scaled from (scale only)

    def __call__(self, frames: Sequence[Any], letterboxes: Sequence[Letterbox] | None = None) -> Any:
        """``frames``: HWC uint8. Without :attr:`scale` each already fits the input; with it
        ``letterboxes[i]`` says what ``frames[i]`` is scaled to. Returns (N, 3, H, W) float32."""
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames; expected 1..{self.max_batch}")
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frames must be HWC uint8 with 3 channels, got {frame.shape} {frame.dtype}")
        stream = None
        if self.device == "gpu":
            import cupy

            stream = cupy.cuda.get_current_stream()  # frames copied, and the outputs ready, in its order
        if self.scale:
            self._feed_to_scale(frames, letterboxes, stream)
        else:
            for frame in frames:
                if frame.shape[0] > self.input_height or frame.shape[1] > self.input_width:
                    raise ValueError(
                        f"frame {frame.shape[1]}x{frame.shape[0]} exceeds the input "
                        f"{self.input_width}x{self.input_height}; scale it first"
                    )
            # A list of host arrays: DALI's CPU graph reads each where it is (no copy).
            self._pipe.feed_input(FRAMES, [*frames, *[_PLACEHOLDER] * (self.max_batch - len(frames))])
        (output,) = dali.run(self._pipe, stream)
        if self.device == "cpu":
            return np.from_dlpack(output.as_tensor())[: len(frames)]
        import cupy

        return cupy.asarray(output.as_tensor())[: len(frames)]

    def _feed_to_scale(self, frames: Sequence[Any], letterboxes: Sequence[Letterbox] | None, stream: Any) -> None:
        if letterboxes is None or len(letterboxes) != len(frames):
            raise ValueError("the graph scales each frame: give one letterbox per frame")
        if any((lb.input_width, lb.input_height) != (self.input_width, self.input_height) for lb in letterboxes):
            raise ValueError(f"letterboxes must be for this graph's {self.input_width}x{self.input_height} input")
        padding = self.max_batch - len(frames)
        height, width = max(frame.shape[0] for frame in frames), max(frame.shape[1] for frame in frames)
        batch = self._dense_batch(height, width)
        xp = array_module(batch)
        for sample, frame in zip(batch, frames):
            frame = frame if array_module(frame) is xp else xp.asarray(frame)
            rows, columns = frame.shape[:2]
            sample[:rows, :columns] = frame
            # The rest of the sample repeats the frame's last column and row: the resize's filter
            # reads a little beyond a frame's extent, and must find there what it would at an edge.
            sample[:rows, columns:] = frame[:, columns - 1 : columns]
            sample[rows:] = sample[rows - 1 : rows]
        sizes = [(lb.content_width, lb.content_height) for lb in letterboxes] + [(1, 1)] * padding
        extents = [(frame.shape[0], frame.shape[1]) for frame in frames] + [(1, 1)] * padding
        self._pipe.feed_input(WIDTHS, [np.array(w, np.float32) for w, _ in sizes])
        self._pipe.feed_input(HEIGHTS, [np.array(h, np.float32) for _, h in sizes])
        self._pipe.feed_input(EXTENTS, [np.array(extent, np.float32) for extent in extents])
        self._pipe.feed_input(FRAMES, batch, cuda_stream=stream)

    def _dense_batch(self, height: int, width: int) -> Any:
        """The dense ``(max_batch, height, width, 3)`` batch buffer, kept while the size holds.
        Contiguous, since DALI reads it where it is only then; a new size is a new buffer."""
        if self._batch is None or self._batch.shape[1:3] != (height, width):
            shape = (self.max_batch, height, width, 3)
            if self.device == "gpu":
                import cupy

                self._batch = cupy.zeros(shape, cupy.uint8)
            else:
                self._batch = np.zeros(shape, np.uint8)
        return self._batch
