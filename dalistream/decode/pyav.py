"""Persistent per-camera PyAV (FFmpeg) decoder; converts only the frames chosen for analysis."""

from __future__ import annotations

import av
import numpy as np

from dalistream.geometry import Letterbox

from .source import CropError, DecodeError, DecoderFrameSource

_CODECS = {"H264": "h264", "H265": "hevc"}


class PyAvDecoder:
    """One camera's stateful decoder.

    Every access unit must pass through :meth:`decode` (P-frames need their references), but
    :meth:`convert` is called only for frames that will be analysed: swscale turns the YUV
    frame straight into BGR at the letterbox content size, so unanalysed frames cost no
    colour conversion or scaling at all.
    """

    def __init__(self, codec: str, threads: int = 1, *, skip_loop_filter: bool = False) -> None:
        try:
            name = _CODECS[codec]
        except KeyError:
            raise ValueError(f"unsupported codec {codec!r}; expected one of {', '.join(_CODECS)}") from None
        self._context = av.CodecContext.create(name, "r")
        self._context.thread_count = threads
        if skip_loop_filter:
            # Deblocking skipped on every frame but key frames: measured on faces-dev made into a
            # 4 Mb/s camera clip (scripts/deblock_ap.py), 18 % less decode CPU and the same AP.
            self._context.options = {"skip_loop_filter": "nokey"}

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
            threads=1,  # swscale's own threads: more CPU, and a wait for them on a busy machine
        )
        # swscale pads rows to its alignment (e.g. 472 px wide); DALI takes dense arrays only.
        return np.ascontiguousarray(image)


class PyAvFullFrame:
    """A decoded frame kept for face crops: FFmpeg's reference-counted frame itself (no copy; the
    decoder takes fresh buffers while it is held). A crop is cut from its YUV planes and
    converted alone, by the same swscale conversion as :meth:`PyAvDecoder.convert`."""

    _PLANAR_420 = frozenset({"yuv420p", "yuvj420p"})

    def __init__(self, frame: av.VideoFrame) -> None:
        self._frame = frame
        self.width = frame.width
        self.height = frame.height

    def crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """RGB pixels of ``box``, its corners moved out to even pixels (4:2:0 chroma comes in pairs)."""
        try:
            return self._crop(box)
        except (av.FFmpegError, ValueError) as exc:  # a pixel format swscale or PyAV refuses
            raise CropError(f"cannot cut a crop from a {self._frame.format.name} frame: {exc}") from exc

    def _crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        frame = self._frame
        if frame.format.name not in self._PLANAR_420:  # another layout: convert it all, then cut
            x1, y1, x2, y2 = box
            return np.ascontiguousarray(frame.to_ndarray(format="rgb24", threads=1)[y1:y2, x1:x2])
        x1, y1 = box[0] & ~1, box[1] & ~1
        x2, y2 = min(box[2] + (box[2] & 1), self.width & ~1), min(box[3] + (box[3] & 1), self.height & ~1)
        width, height = max(2, x2 - x1), max(2, y2 - y1)
        x1, y1 = min(x1, (self.width & ~1) - width), min(y1, (self.height & ~1) - height)
        planes = [np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size) for plane in frame.planes]
        packed = np.empty((height * 3 // 2, width), np.uint8)  # yuv420p: Y, then U, then V
        packed[:height] = planes[0][y1 : y1 + height, x1 : x1 + width]
        chroma = packed[height:].reshape(2, -1)
        for index in (1, 2):
            chroma[index - 1] = planes[index][y1 // 2 : (y1 + height) // 2, x1 // 2 : (x1 + width) // 2].reshape(-1)
        part = av.VideoFrame.from_ndarray(packed, format=frame.format.name)
        part.colorspace, part.color_range = frame.colorspace, frame.color_range
        # One thread: swscale's own threads cost more than a crop's conversion (measured on a
        # 400x500 crop: 0.16 ms of CPU alone, 0.36 ms and 2.3 ms of wall time with threads=0).
        return part.to_ndarray(format="rgb24", threads=1)


class PyAvFrameSource(DecoderFrameSource):
    """The CPU source: FFmpeg's decoder through PyAV, swscale for the selected frames."""

    def open(self, codec: str) -> PyAvDecoder:
        return PyAvDecoder(codec, skip_loop_filter=self.spec.skip_loop_filter)

    def full_frame(self, frame: av.VideoFrame, image: np.ndarray) -> PyAvFullFrame:
        return PyAvFullFrame(frame)  # ``image`` is the letterboxed copy: the crop comes from the decoded frame
