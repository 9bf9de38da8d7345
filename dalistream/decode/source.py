"""Per-camera frame sources: a stream's access units in, the frames chosen for analysis out.

A :class:`FrameSource` is one camera's decoder. It is fed, in decode order, a
:class:`StreamStart` whenever a new stream begins (a new RTSP session, a file opened) and the
access units of that stream; it decodes every unit (P-frames need their references), asks its
:class:`FrameSelector` which frames to keep by presentation time, converts only those to the
:class:`FrameSpec` (letterbox size, channel order), and returns them as :class:`SampledFrame` s
that own their pixels. Each device has its implementation in :data:`SOURCES`: a GPU decoder is
one more class there, not a branch in the runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages


@dataclass(frozen=True, slots=True)
class StreamStart:
    """A new stream of ``codec`` ("H264" or "H265") begins: the decoder starts afresh."""

    codec: str


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """What a selected frame is converted to."""

    input_size: tuple[int, int] | None
    """Scale into the letterbox of this (width, height); None keeps the source size."""
    pixel_format: str
    """``"bgr24"`` or ``"rgb24"``."""


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """A frame chosen for analysis, converted as its :class:`FrameSpec` says (HWC uint8, owned)."""

    camera: str
    seq: int
    pts: float
    image: np.ndarray
    letterbox: Letterbox
    received: float
    wallclock: float


class Decoded(NamedTuple):
    frames: list[SampledFrame]
    errors: int  # access units the decoder rejected
    corrupt: int = 0  # frames it decoded with errors concealed (damaged or missing data)
    decoded: int = 0  # frames the decoder produced, selected or not


class FrameSelector(Protocol):
    """Which decoded frames a source keeps (the pipeline's sampler, calibration's selection)."""

    def take(self, pts: float) -> bool:
        """Keep the frame shown at ``pts`` (seconds)?"""

    def reset(self) -> None:
        """A new stream began: its timestamps start afresh."""


class FrameSource(ABC):
    """One camera's decoder; see the module docstring. One :meth:`process` call at a time
    (a decode thread); frames keep their order and ``seq`` counts them per camera."""

    def __init__(self, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> None:
        self.camera = camera
        self.selector = selector
        self.spec = spec
        self.stages = stages
        self.next_seq = 0

    @abstractmethod
    def process(self, items: Sequence[StreamStart | ReceivedAccessUnit]) -> Decoded:
        """Decode ``items`` in order; the selected frames, converted, and the rejected units.
        A :class:`StreamStart` first drains the previous stream's decoder."""

    @abstractmethod
    def finish(self) -> Decoded:
        """The stream ended: the selected frames the decoder still held back."""
