"""The ``dali-gop`` GPU source: each camera's closed GOPs decoded whole by DALI's video decoder.

``pipeline.gpu_decode = "dali-gop"``. A :class:`GopAssembler` groups a camera's access units
into GOPs (a key unit, which carries SPS/PPS, opens one; the next key unit or the stream's end
closes it). A closed GOP is one self-contained sample, handed to DALI as an MPEG-TS stream with
each unit's timestamps (DALI indexes a sample's frames by time, and FFmpeg's raw Annex-B
demuxer gives none: DALI refuses such a stream as having "no valid timestamps"). The sampler
picks its frames by presentation time, and DALI's mixed video decoder (NVDEC underneath)
decodes the sample and returns only those frames, so the decoder keeps no state between
samples. That suits throughput — GOPs of many cameras are independent work — at the price of latency: a frame
leaves when its GOP has closed, up to one GOP interval (typically 1–2 s) after it was sent.
``"nvdec"`` (the default, :mod:`.nvdec`) keeps a decoder per camera and delivers each frame as
its access unit arrives; prefer it for live monitoring, and ``dali-gop`` for recorded clips or
where records may lag by a GOP.

GOP assembly is pure and tested on the CPU; the decode is unverified on a GPU.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from dalistream import dali
from dalistream.geometry import Letterbox
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages

from .source import ArrayFullFrame, Decoded, FrameSelector, FrameSource, FrameSpec, SampledFrame, StreamStart

MAX_GOP_UNITS = 600  # 24 s at 25 fps: a longer GOP keeps this many units, the tail is dropped
_RAW_FORMATS = {"H264": "h264", "H265": "hevc"}  # FFmpeg's raw demuxers
_TICK = Fraction(1, 90_000)  # MPEG-TS time base


@dataclass(frozen=True, slots=True)
class Gop:
    """A closed GOP: its access units in decode order, the first a key unit."""

    codec: str
    units: tuple[ReceivedAccessUnit, ...]

    @property
    def data(self) -> bytes:
        """The GOP as one Annex-B elementary stream."""
        return b"".join(unit.data for unit in self.units)

    def mpegts(self) -> bytes:
        """The GOP as an MPEG-TS stream: each access unit one packet with its presentation time
        and a decode time, so a demuxer indexes it by time (raw Annex-B has no timestamps).

        Decode times: the units' presentation times sorted, all moved back by the largest
        reordering (none for I/P streams), so they rise in decode order and never pass a
        unit's presentation time. Times start at zero (DALI's index skips negative ones).
        """
        start = min(unit.pts for unit in self.units)
        shown = [unit.pts - start for unit in self.units]
        ordered = sorted(shown)
        delay = max(0.0, *(o - p for o, p in zip(ordered, shown)))
        with av.open(io.BytesIO(self.units[0].data), format=_RAW_FORMATS[self.codec]) as raw:
            template = raw.streams.video[0]  # the codec's parameters, from the key unit's parameter sets
            output = io.BytesIO()
            with av.open(output, "w", format="mpegts") as muxer:
                stream = muxer.add_stream_from_template(template)
                for unit, pts, dts in zip(self.units, shown, ordered):
                    packet = av.Packet(unit.data)
                    packet.time_base = _TICK
                    packet.pts, packet.dts = round((pts + delay) / _TICK), round(dts / _TICK)
                    packet.is_keyframe = unit.key
                    packet.stream = stream
                    muxer.mux(packet)
        return output.getvalue()

    def display_order(self) -> list[ReceivedAccessUnit]:
        """The units in presentation order (by pts; equal pts keep decode order): the decoder
        returns frame ``i`` for ``display_order()[i]``."""
        return sorted(self.units, key=lambda unit: unit.pts)


class GopAssembler:
    """One camera's access units, grouped into closed GOPs (see the module docstring).

    Units before the first key unit of a stream cannot be decoded and are counted in
    :attr:`dropped`, as are the units past ``max_units`` of an overlong GOP (which keeps its
    first ``max_units`` and closes at the next key unit, as any other).
    """

    def __init__(self, max_units: int = MAX_GOP_UNITS) -> None:
        if max_units < 1:
            raise ValueError(f"max_units must be >= 1, got {max_units}")
        self.max_units = max_units
        self.dropped = 0
        self._codec: str | None = None
        self._units: list[ReceivedAccessUnit] = []

    def start(self, codec: str) -> Gop | None:
        """A new stream of ``codec`` begins; returns the previous stream's last GOP."""
        gop = self._close()
        self._codec = codec
        return gop

    def add(self, unit: ReceivedAccessUnit) -> Gop | None:
        """Take the next unit (decode order); returns the GOP it closes, if any."""
        if self._codec is None:
            raise RuntimeError("access unit before the stream started")
        if unit.key:
            gop = self._close()
            self._units = [unit]
            return gop
        if not self._units or len(self._units) >= self.max_units:
            self.dropped += 1
            return None
        self._units.append(unit)
        return None

    def finish(self) -> Gop | None:
        """The stream ended: its last GOP."""
        return self._close()

    def _close(self) -> Gop | None:
        units, self._units = self._units, []
        if not units or self._codec is None:
            return None
        return Gop(self._codec, tuple(units))


class _Decoder(threading.local):
    """Per decode thread: one built GOP-decoding pipeline (a pipeline runs one call at a time)
    and the CUDA stream its outputs are made ready on and copied out on."""

    pipe: Any = None
    stream: Any = None


class DaliGopFrameSource(FrameSource):
    """The ``dali-gop`` source (see the module docstring). Frames are CuPy arrays at the source
    size in the model's channel order, like :class:`~dalistream.decode.nvdec.NvdecFrameSource`'s."""

    _pipelines = _Decoder()

    def __init__(self, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> None:
        super().__init__(camera, selector, spec, stages)
        self._gops = GopAssembler()

    def process(self, items: Sequence[StreamStart | ReceivedAccessUnit]) -> Decoded:
        frames: list[SampledFrame] = []
        errors = decoded = 0
        dropped = self._gops.dropped
        for item in items:
            starts = isinstance(item, StreamStart)
            gop = self._gops.start(item.codec) if isinstance(item, StreamStart) else self._gops.add(item)
            if gop is not None:
                decoded_now, failed = self._decode(gop, frames)
                decoded, errors = decoded + decoded_now, errors + failed
            if starts:
                self.selector.reset()  # after the old stream's last GOP was sampled
                self._last_error = ""
        return Decoded(frames, errors + self._gops.dropped - dropped, 0, decoded)

    def finish(self) -> Decoded:
        frames: list[SampledFrame] = []
        gop = self._gops.finish()
        decoded, errors = self._decode(gop, frames) if gop is not None else (0, 0)
        return Decoded(frames, errors, 0, decoded)

    def _decode(self, gop: Gop, frames: list[SampledFrame]) -> tuple[int, int]:
        """Decode the frames of ``gop`` the selector takes; (frames decoded, units rejected)."""
        order = gop.display_order()
        wanted = [index for index, unit in enumerate(order) if self.selector.take(unit.pts)]
        if not wanted:
            return 0, 0  # stateless: a GOP with no frame to analyse is not decoded at all
        with self.stages.measure("decode", len(gop.units)):
            try:
                images, stream = self._run(gop, wanted)
            except RuntimeError as exc:  # DALI reports an undecodable sample as RuntimeError
                self._pipelines.pipe = None  # a pipeline that failed a run is not reused
                self._rejected(exc)
                return 0, len(gop.units)
        with self.stages.measure("convert", len(wanted)), stream:
            # Copied out on the stream DALI's outputs are ready on, in the model's channel order
            # (DALI's next run may reuse its output buffer); the host waits once for the GOP's
            # copies, so the frames are whole before another stream reads them.
            owned = [(image[..., ::-1] if self.spec.pixel_format == "bgr24" else image).copy() for image in images]
            stream.synchronize()
        for index, pixels in zip(wanted, owned, strict=True):
            unit = order[index]
            height, width = pixels.shape[:2]
            input_width, input_height = self.spec.input_size or (width, height)
            letterbox = Letterbox.fit(width, height, input_width, input_height)
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            full = ArrayFullFrame(pixels, self.spec.pixel_format) if self.spec.crops else None  # crops cut on the device
            frames.append(SampledFrame(self.camera, seq, unit.pts, pixels, letterbox, unit.received, unit.wallclock, full))
        return len(gop.units), 0

    def _run(self, gop: Gop, wanted: list[int]) -> tuple[Any, Any]:
        """The wanted frames of ``gop`` (display-order indices) as device arrays of DALI's output,
        ready in the order of the stream returned with them."""
        import cupy

        from dalistream.graphs import gop_decode
        from dalistream.graphs.gop import FRAMES, GOP

        state = self._pipelines
        if state.pipe is None:
            state.pipe = dali.build(gop_decode, device_id=0, batch_size=1, num_threads=1)
        if state.stream is None:
            state.stream = cupy.cuda.Stream(non_blocking=True)
        encoded = np.frombuffer(gop.mpegts(), np.uint8)  # fed without a copy: alive until the run is done
        state.pipe.feed_input(GOP, [encoded])
        state.pipe.feed_input(FRAMES, [np.asarray(wanted, np.int32)])
        (output,) = dali.run(state.pipe, state.stream)
        return list(cupy.asarray(output.as_tensor())[0]), state.stream  # (frames, H, W, 3) of the one sample
