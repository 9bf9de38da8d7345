"""The GPU source: one NVDEC decoder per camera through PyNvVideoCodec, frames kept on the device.

Each camera's access units (our own Annex-B, rebuilt from RTP) are wrapped as PyNvVideoCodec
packets and decoded in low-latency mode: with ``DisplayDecodeLatencyType.LOW`` and every
packet marked ``ENDOFPICTURE``, a frame of an IPPP stream comes out of the call that fed its
access unit (``NATIVE`` would hold about four frames back). LOW assumes what IP cameras send
(I and P frames); how NVDEC orders a B-frame stream at LOW latency is not verified.

Each decoder is made at the stream's first access unit, sized from its sequence parameter
set (:func:`~dalistream.rtp.sps.picture_size`): its surfaces for that picture size rather
than the largest a camera might send, and, for a stream larger than the model's letterbox,
an output at the letterbox size (NVDEC's own scaler, set by ``setReconfigParams`` before
the first picture), so the frame pool, the copies out of it and the GPU graph's resize work
on a quarter of a 1080p frame's pixels for the default 960x544 input. Frames still report the stream's size, the size boxes
are mapped back to.

Every frame is decoded (P-frames need their references); only selected frames are copied
out of the decoder's frame pool (which the next ``Decode`` call reuses) into a CuPy array of
their own, in the model's channel order: the GPU graph letterboxes them in the batch. A new
stream (reconnect, codec or size change) gets a new decoder, as on the CPU. With face crops
(``faces.crops``, the default) NVDEC does not scale: crops are cut from the frame at the
stream's full resolution, on the device, and the GPU graph scales the frame instead.

Unverified on a GPU (none was available while this was written); ``tests/gpu`` and
``scripts/gpu_check.sh`` check it against PyAV where one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.rtp.annexb import sequence_parameters
from dalistream.rtp.sps import SpsError, picture_size

from .source import ArrayFullFrame, DecodeError, DecoderFrameSource, FrameSelector, FrameSpec

_CODECS = {"H264": "H264", "H265": "HEVC"}
_CODED_ALIGN = 16  # coded sizes are whole 16-pixel macroblocks (H.264) or 8-pixel coding blocks (H.265)


def output_size(width: int, height: int, input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The size NVDEC outputs a ``width`` x ``height`` stream at: its letterbox content size in
    ``input_size``, rounded up to even (NV12 chroma comes in pairs), when that is smaller than
    the stream; None (the stream's own size) otherwise."""
    if input_size is None:
        return None
    letterbox = Letterbox.fit(width, height, *input_size)
    target = (letterbox.content_width + letterbox.content_width % 2, letterbox.content_height + letterbox.content_height % 2)
    return target if target[0] <= width and target[1] <= height and target != (width, height) else None


@dataclass(frozen=True, slots=True)
class NvdecFrame:
    """A decoded frame still in the decoder's pool: valid until the decoder's next call."""

    pts: int
    width: int  # the stream's picture size (the view may be scaled down from it)
    height: int
    view: Any  # DLPack-capable view of the pool's RGB HWC buffer
    is_corrupt: bool = False


class NvdecDecoder:
    """One stream's NVDEC decoder, RGB output in device memory, low latency; with
    ``input_size``, a stream larger than its letterbox in it comes out at the letterbox size."""

    def __init__(self, codec: str, input_size: tuple[int, int] | None = None, gpu: int = 0) -> None:
        import cupy
        import PyNvVideoCodec as nvc

        if codec not in _CODECS:
            raise ValueError(f"unsupported codec {codec!r}; expected one of {', '.join(_CODECS)}")
        self._codec = codec
        self._nvc = nvc
        # What PyNvVideoCodec raises for a stream or an argument NVDEC refuses: its two exception
        # types (unrelated classes), and RuntimeError for the C++ errors pybind11 passes on as
        # such (setReconfigParams beyond the decoder's maximum size).
        self._errors = (*(getattr(nvc, name) for name in ("PyNvVCException", "PyNvVCExceptionUnsupported")), RuntimeError)
        self._cupy = cupy
        self._gpu = gpu
        self._input_size = input_size
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._decoder: Any = None  # made at the first unit, from its SPS
        self._refused = ""  # why NVDEC refused this stream's last SPS
        self.size: tuple[int, int] | None = None  # the stream's picture size
        self.output: tuple[int, int] | None = None  # the size NVDEC scales it to, if it does

    def _create(self, data: bytes) -> None:
        try:
            size = picture_size(data, self._codec)
        except SpsError as exc:
            raise DecodeError(f"unreadable sequence parameter set: {exc}") from exc
        if size is None:  # nothing to decode until a key unit brings one; say why there is no decoder
            raise DecodeError(self._refused or "access unit before the stream's first sequence parameter set")
        output = output_size(*size, self._input_size)
        try:
            self._decoder = self._create_decoder(size, output)
        except self._errors as exc:
            raise self._refuse(size, exc) from exc
        self.size, self.output = size, output

    def _refuse(self, size: tuple[int, int], exc: Exception) -> DecodeError:
        """NVDEC refused this stream (profile, bit depth, size beyond the GPU's caps, no session
        left): the decoder is dropped (a refused one answers every later unit with "Decoder not
        initialized."), the units until the next SPS carry the reason, and that SPS gets a new one."""
        self._decoder = None
        self._refused = f"NVDEC cannot decode this {size[0]}x{size[1]} {self._codec} stream: {str(exc).strip()}"
        return DecodeError(self._refused)

    def _create_decoder(self, size: tuple[int, int], output: tuple[int, int] | None) -> Any:
        nvc = self._nvc
        decoder = nvc.CreateDecoder(
            gpuid=self._gpu,
            codec=getattr(nvc.cudaVideoCodec, _CODECS[self._codec]),
            cudacontext=0,
            cudastream=self.stream.ptr,
            usedevicememory=True,
            # Surfaces for this stream's coded size (whole macroblocks): a new SPS gets a new
            # decoder, so no room is kept for a larger picture.
            maxwidth=_CODED_ALIGN * -(-size[0] // _CODED_ALIGN),
            maxheight=_CODED_ALIGN * -(-size[1] // _CODED_ALIGN),
            outputColorType=nvc.OutputColorType.RGB,
            latency=nvc.DisplayDecodeLatencyType.LOW,
        )
        if output is not None:
            decoder.setReconfigParams(*output)
        return decoder

    def decode(self, data: bytes, tag: int) -> list[NvdecFrame]:
        """Feed one access unit; the frames it completes (views into the pool), tagged ``tag``.
        The stream's first unit must carry its SPS (cameras and clips start at a key unit)."""
        if self._decoder is None:
            self._create(data)
        buffer = np.frombuffer(data, np.uint8)
        packet = self._nvc.PacketData()
        packet.bsl_data = buffer.ctypes.data
        packet.bsl = buffer.size
        packet.pts = tag
        packet.decode_flag = int(self._nvc.VideoPacketFlag.ENDOFPICTURE)
        return self._run(packet)

    def flush(self) -> list[NvdecFrame]:
        """An empty packet is end-of-stream: the frames still held back."""
        if self._decoder is None:
            return []
        return self._run(self._nvc.PacketData())

    def _run(self, packet: Any) -> list[NvdecFrame]:
        try:
            frames = self._decoder.Decode(packet)
        except self._errors as exc:  # raised by the sequence callback too: the stream is refused
            raise self._refuse(self.size or (0, 0), exc) from exc
        out = []
        for frame in frames:
            height, width = frame.shape[:2]
            if self.output is not None:
                width, height = self.size  # type: ignore[misc]
            out.append(NvdecFrame(int(frame.timestamp), int(width), int(height), frame))
        return out

    def convert(self, frame: NvdecFrame, letterbox: Letterbox, pixel_format: str = "bgr24") -> Any:
        """The frame copied out of the pool: CuPy HWC uint8 at the size it was decoded to (the
        stream's, or :attr:`output`), in ``pixel_format``'s channel order (the copy and the
        channel swap are one kernel)."""
        cupy = self._cupy
        with self.stream:
            pixels = cupy.from_dlpack(frame.view)
            if pixel_format == "bgr24":
                pixels = pixels[..., ::-1]
            image = cupy.ascontiguousarray(pixels)
        self.stream.synchronize()  # the pool slot may be rewritten once Decode is called again
        return image


class NvdecFrameSource(DecoderFrameSource):
    """The GPU source: NVDEC through PyNvVideoCodec; selected frames stay on the device.

    A key unit whose sequence parameters (SPS; H.265 VPS + SPS) differ from the stream's so far
    gets a fresh decoder: NVDEC reconfigures itself on a size change but keeps the old output
    size unless told the new one first, which would scale the new frames to the old size.
    """

    decoder = NvdecDecoder

    def __init__(self, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> None:
        super().__init__(camera, selector, spec, stages)
        self._sequence = b""

    def open(self, codec: str) -> NvdecDecoder:
        self._sequence = b""  # a fresh decoder takes whatever parameters come first
        # Face crops are cut at the stream's full resolution: with them, NVDEC does not scale
        # (the GPU graph scales each frame into its letterbox instead).
        return self.decoder(codec, None if self.spec.crops else self.spec.input_size)

    def full_frame(self, frame: NvdecFrame, image: Any) -> ArrayFullFrame:
        """The converted frame itself (full size, owned, on the device): crops are sliced there
        and only they are copied to the host."""
        return ArrayFullFrame(image, self.spec.pixel_format)

    def needs_new_decoder(self, unit: ReceivedAccessUnit) -> bool:
        sequence = sequence_parameters(unit.data, self._codec) if unit.key else b""
        if not sequence:
            return False
        changed = bool(self._sequence) and sequence != self._sequence
        self._sequence = sequence
        return changed


def decoder_engines(codec: str = "H264") -> int:
    """NVDEC engines of GPU 0 (PyNvVideoCodec's decoder caps); 0 when they cannot be read."""
    import PyNvVideoCodec as nvc

    caps = nvc.GetDecoderCaps(
        gpuid=0,
        codec=getattr(nvc.cudaVideoCodec, _CODECS[codec]),
        chromaformat=getattr(nvc.cudaVideoChromaFormat, "420"),
        bitdepth=8,
    )
    return int(caps.get("num_decoder_engines", 0)) if caps.get("supported", 1) else 0

