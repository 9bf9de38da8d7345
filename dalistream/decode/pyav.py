"""Persistent per-camera PyAV (FFmpeg) decoder; converts only the frames chosen for analysis."""

from __future__ import annotations

import av
import numpy as np

from dalistream.geometry import Letterbox

from .source import DecodeError, DecoderFrameSource

_CODECS = {"H264": "h264", "H265": "hevc"}


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


class PyAvFrameSource(DecoderFrameSource):
    """The CPU source: FFmpeg's decoder through PyAV, swscale for the selected frames."""

    def open(self, codec: str) -> PyAvDecoder:
        return PyAvDecoder(codec)
