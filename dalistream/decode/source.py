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
from typing import Any, NamedTuple, Protocol

import numpy as np
import structlog

from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.models.arrays import to_host

from .timing import FrameTimes

log = structlog.get_logger(__name__)


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
    crops: bool = False
    """Also keep each selected frame's picture at full resolution (:class:`FullFrame`), for face
    crops."""
    skip_loop_filter: bool = False
    """CPU decoders: skip the loop filter (deblocking) on all but key frames (``pipeline.skip_loop_filter``)."""


class CropError(ValueError):
    """A crop could not be cut from a kept frame (a picture layout the converter refuses)."""


class FullFrame(Protocol):
    """A selected frame's picture at the stream's full resolution, kept (by reference, not
    converted) until its faces are known, so only the crops asked for are cut and converted."""

    width: int
    height: int

    def crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """The pixels of ``box`` (``x1, y1, x2, y2``: whole pixels, inside the frame, non-empty)
        as RGB HWC uint8 on the host; an implementation may widen it by a pixel to align to its
        chroma subsampling. :class:`CropError` when it cannot."""


class ArrayFullFrame:
    """A :class:`FullFrame` of a picture already converted at full resolution (HWC uint8 in
    ``pixel_format``, NumPy or CuPy): a crop is sliced where the picture is and only the crop
    is copied to the host, in RGB. For sources whose selected frames keep the stream's size (the
    GPU ones without decoder scaling)."""

    def __init__(self, image: Any, pixel_format: str) -> None:
        self._image = image
        self._bgr = pixel_format == "bgr24"
        self.height, self.width = image.shape[:2]

    def crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        x1, y1, x2, y2 = box
        part = self._image[y1:y2, x1:x2]
        return np.ascontiguousarray(to_host(part[..., ::-1] if self._bgr else part))


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """A frame chosen for analysis, converted as its :class:`FrameSpec` says (HWC uint8, owned).

    ``image`` is a NumPy array scaled to the letterbox content size (CPU sources) or a CuPy
    array at the source size (GPU sources: the GPU graph scales it with the batch). ``full`` is
    its full-resolution picture when the spec asks for crops and the source keeps them.
    """

    camera: str
    seq: int
    pts: float
    image: Any
    letterbox: Letterbox
    received: float
    wallclock: float
    full: FullFrame | None = None


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
        self._last_error = ""  # the stream's last decode error, logged when it changes

    @abstractmethod
    def process(self, items: Sequence[StreamStart | ReceivedAccessUnit]) -> Decoded:
        """Decode ``items`` in order; the selected frames, converted, and the rejected units.
        A :class:`StreamStart` first drains the previous stream's decoder."""

    @abstractmethod
    def finish(self) -> Decoded:
        """The stream ended: the selected frames the decoder still held back."""

    def _rejected(self, error: Exception) -> None:
        """Say why units are rejected (counted as ``decode_errors`` in the camera's gap
        events): once per stream and reason, not once per unit."""
        if str(error) != self._last_error:
            self._last_error = str(error)
            log.warning("decode_error", camera=self.camera, error=self._last_error)


class DecodeError(RuntimeError):
    """The decoder rejected an access unit (corrupt or undecodable data from the camera)."""


class DecodedFrame(Protocol):
    """What a stateful decoder hands back: the tag it was fed with as ``pts``, and its size."""

    pts: int | None
    width: int
    height: int
    is_corrupt: bool


class StreamDecoder(Protocol):
    """One stream's stateful decoder (FFmpeg's, NVDEC)."""

    def decode(self, data: bytes, tag: int) -> Sequence[DecodedFrame]:
        """Feed one Annex-B access unit; the frames it completes, carrying their unit's ``tag``
        as ``pts``. :class:`DecodeError` when the unit is rejected."""

    def flush(self) -> Sequence[DecodedFrame]:
        """The stream ended: the frames still held back. It decodes nothing after."""

    def convert(self, frame: Any, letterbox: Letterbox, pixel_format: str) -> Any:
        """The frame's pixels as the source delivers them (owned: the decoder may reuse its
        buffers on the next call)."""


class DecoderFrameSource(FrameSource):
    """A source around a stateful decoder: a new decoder per stream, every unit decoded, frames
    timed by the unit they came from and selected by presentation time, only the selected ones
    converted. Subclasses say which decoder (:meth:`open`)."""

    # A decoder holds back at most a few frames (reordering, frame threads); an access unit
    # with no frame after this many more was swallowed by the decoder.
    PENDING_LIMIT = 16

    def __init__(self, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> None:
        super().__init__(camera, selector, spec, stages)
        self._decoder: StreamDecoder | None = None
        self._codec = ""
        self._times: FrameTimes[ReceivedAccessUnit] = FrameTimes()
        self._tag = 0
        self._corrupt = 0  # frames decoded with concealed errors in the current call
        self._decoded = 0  # frames decoded in the current call

    @abstractmethod
    def open(self, codec: str) -> StreamDecoder:
        """A fresh decoder for a stream of ``codec``."""

    @abstractmethod
    def full_frame(self, frame: DecodedFrame, image: Any) -> FullFrame:
        """``frame``'s full-resolution picture, valid past the decoder's next call (``image``:
        what :meth:`StreamDecoder.convert` made of it, which a source decoding on the device at
        full size can wrap in an :class:`ArrayFullFrame`)."""

    def needs_new_decoder(self, unit: ReceivedAccessUnit) -> bool:
        """Whether ``unit`` must start a fresh decoder within the stream (the current one is
        drained first; timing and sampling go on). Never, by default: FFmpeg's decoder follows
        a change of picture size by itself."""
        return False

    def process(self, items: Sequence[StreamStart | ReceivedAccessUnit]) -> Decoded:
        frames: list[SampledFrame] = []
        errors = 0
        self._corrupt = self._decoded = 0
        for item in items:
            if isinstance(item, StreamStart):
                errors += self._drain(frames)
                self._codec = item.codec
                self._decoder = self.open(item.codec)
                self._last_error = ""
                self.selector.reset()
                continue
            if self._decoder is None:
                raise RuntimeError(f"{self.camera}: access unit before the stream started")
            if self.needs_new_decoder(item):
                errors += self._drain(frames)
                self._decoder = self.open(self._codec)
            self._tag += 1
            self._times.fed(self._tag, item, item.pts)
            with self.stages.measure("decode"):
                try:
                    decoded = self._decoder.decode(item.data, self._tag)
                except DecodeError as exc:
                    self._times.void(self._tag)
                    self._rejected(exc)
                    errors += 1
                    continue
            self._select(decoded, frames)
            self._times.expire(self._tag - self.PENDING_LIMIT)
        return Decoded(frames, errors, self._corrupt, self._decoded)

    def finish(self) -> Decoded:
        frames: list[SampledFrame] = []
        self._corrupt = self._decoded = 0
        errors = self._drain(frames)
        return Decoded(frames, errors, self._corrupt, self._decoded)

    def _drain(self, frames: list[SampledFrame]) -> int:
        """Take the frames the current decoder holds back; it is done. Returns errors (0 or 1)."""
        errors = 0
        try:
            if self._decoder is not None:
                with self.stages.measure("decode", 0):
                    try:
                        self._select(self._decoder.flush(), frames)
                    except DecodeError as exc:
                        self._rejected(exc)
                        errors = 1
        finally:
            self._decoder = None
            self._times = FrameTimes()
        return errors

    def _select(self, decoded: Sequence[DecodedFrame], frames: list[SampledFrame]) -> None:
        self._decoded += len(decoded)
        for frame in decoded:
            self._corrupt += frame.is_corrupt
            timed = self._times.frame(frame.pts)
            if timed is not None and self.selector.take(timed[1]):
                frames.append(self._convert(frame, *timed))

    def _convert(self, frame: DecodedFrame, unit: ReceivedAccessUnit, pts: float) -> SampledFrame:
        width, height = self.spec.input_size or (frame.width, frame.height)
        letterbox = Letterbox.fit(frame.width, frame.height, width, height)
        with self.stages.measure("convert"):
            image = self._decoder.convert(frame, letterbox, self.spec.pixel_format)  # type: ignore[union-attr]
        full = self.full_frame(frame, image) if self.spec.crops else None
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return SampledFrame(self.camera, seq, pts, image, letterbox, unit.received, unit.wallclock, full)
