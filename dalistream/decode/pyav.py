"""Persistent per-camera PyAV (FFmpeg) decoder; converts only the frames chosen for analysis."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages

from .source import Decoded, FrameSelector, FrameSource, FrameSpec, SampledFrame, StreamStart
from .timing import FrameTimes

_CODECS = {"H264": "h264", "H265": "hevc"}


class DecodeError(RuntimeError):
    """The decoder rejected an access unit (corrupt or undecodable data from the camera)."""


class PyAvDecoder:
    """One camera's stateful decoder.

    Every access unit must pass through :meth:`decode` (P-frames need their references), but
    :meth:`convert` is called only for frames that will be analysed: swscale turns the YUV
    frame straight into BGR at the letterbox content size, so unanalysed frames cost no
    colour conversion or scaling at all.
    """

    def __init__(self, codec: str, threads: int = 1) -> None:
        try:
            name = _CODECS[codec]
        except KeyError:
            raise ValueError(f"unsupported codec {codec!r}; expected one of {', '.join(_CODECS)}") from None
        self._context = av.CodecContext.create(name, "r")
        self._context.thread_count = threads

    def decode(self, data: bytes, tag: int) -> list[av.VideoFrame]:
        """Feed one Annex-B access unit; returns the frames it completes.

        ``tag`` is carried through as the frame's ``pts`` so the caller can find the access
        unit a frame came from (decoders may hand frames back later than their input).
        """
        packet = av.Packet(data)
        packet.pts = tag
        try:
            return self._context.decode(packet)
        except av.FFmpegError as exc:
            raise DecodeError(f"decoder rejected access unit: {exc}") from exc

    def flush(self) -> list[av.VideoFrame]:
        """The stream ended: the frames the decoder still holds back. It decodes nothing after."""
        try:
            return self._context.decode(None)
        except av.FFmpegError as exc:
            raise DecodeError(f"decoder failed to drain: {exc}") from exc

    @staticmethod
    def convert(frame: av.VideoFrame, letterbox: Letterbox, pixel_format: str = "bgr24") -> np.ndarray:
        """Scale + colour-convert one frame to ``pixel_format`` (``"bgr24"`` or ``"rgb24"``, the
        model's channel order) at the letterbox content size (HWC uint8, rows densely packed)."""
        image = frame.to_ndarray(
            width=letterbox.content_width,
            height=letterbox.content_height,
            format=pixel_format,
            interpolation="BILINEAR",
        )
        # swscale pads rows to its alignment (e.g. 472 px wide); DALI takes dense arrays only.
        return np.ascontiguousarray(image)


class PyAvFrameSource(FrameSource):
    """The CPU source: FFmpeg's decoder through PyAV, swscale for the selected frames."""

    # A decoder holds back at most a few frames (reordering, frame threads); an access unit
    # with no frame after this many more was swallowed by the decoder.
    PENDING_LIMIT = 16

    def __init__(self, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> None:
        super().__init__(camera, selector, spec, stages)
        self._decoder: PyAvDecoder | None = None
        self._times: FrameTimes[ReceivedAccessUnit] = FrameTimes()
        self._tag = 0
        self._corrupt = 0  # frames decoded with concealed errors in the current call
        self._decoded = 0  # frames decoded in the current call

    def process(self, items: Sequence[StreamStart | ReceivedAccessUnit]) -> Decoded:
        frames: list[SampledFrame] = []
        errors = 0
        self._corrupt = self._decoded = 0
        for item in items:
            if isinstance(item, StreamStart):
                errors += self._drain(frames)
                self._decoder = PyAvDecoder(item.codec)
                self.selector.reset()
                continue
            if self._decoder is None:
                raise RuntimeError(f"{self.camera}: access unit before the stream started")
            self._tag += 1
            self._times.fed(self._tag, item, item.pts)
            with self.stages.measure("decode"):
                try:
                    decoded = self._decoder.decode(item.data, self._tag)
                except DecodeError:
                    self._times.void(self._tag)
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
        decoder, self._decoder = self._decoder, None
        errors = 0
        if decoder is not None:
            with self.stages.measure("decode", 0):
                try:
                    self._select(decoder.flush(), frames)
                except DecodeError:
                    errors = 1
        self._times = FrameTimes()
        return errors

    def _select(self, decoded: list[av.VideoFrame], frames: list[SampledFrame]) -> None:
        self._decoded += len(decoded)
        for frame in decoded:
            self._corrupt += frame.is_corrupt
            timed = self._times.frame(frame.pts)
            if timed is not None and self.selector.take(timed[1]):
                frames.append(self._convert(frame, *timed))

    def _convert(self, frame: av.VideoFrame, unit: ReceivedAccessUnit, pts: float) -> SampledFrame:
        width, height = self.spec.input_size or (frame.width, frame.height)
        letterbox = Letterbox.fit(frame.width, frame.height, width, height)
        with self.stages.measure("convert"):
            image = PyAvDecoder.convert(frame, letterbox, self.spec.pixel_format)
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return SampledFrame(self.camera, seq, pts, image, letterbox, unit.received, unit.wallclock)
