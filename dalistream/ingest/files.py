"""A recorded clip as a camera: ``url = "file:///path/clip.h264"`` (also .h265, .mp4, .mkv).

The clip enters the pipeline where an RTSP camera's depacketizer output does: Annex-B access
units with presentation times, through the same :class:`~dalistream.ingest.sink.IngestSink`.
Raw H.264/H.265 elementary streams are split into access units by FFmpeg's parser; in MP4 or
Matroska the samples are length-prefixed, so FFmpeg's ``*_mp4toannexb`` bitstream filter turns
them into Annex-B with the parameter sets before each key frame.

``pace = "realtime"`` hands each unit over at its decode time on the clip's own clock, as a
camera would (a pipeline that falls behind drops, as with a camera); ``"fast"`` hands units over
as fast as the pipeline takes them, waiting instead of dropping. ``loop = true`` starts over at
the end with timestamps that keep growing. The camera's events: ``connected`` (``codec``,
``file``), ``end_of_file`` (``plays``, ``looping``), ``file_error`` (``reason``: the file cannot
be opened, is not H.264/H.265, or cannot be read on); a file that cannot be opened, or whose
play yields nothing, ends the camera.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import structlog
from av.bitstream import BitStreamFilterContext

from dalistream.config import CameraConfig

from .sink import IngestSink, ReceivedAccessUnit

log = structlog.get_logger(__name__)

# File name endings of raw elementary streams, and FFmpeg's demuxer for each.
RAW_FORMATS = {".h264": "h264", ".264": "h264", ".h265": "hevc", ".265": "hevc", ".hevc": "hevc"}
CODECS = {"h264": "H264", "hevc": "H265"}  # FFmpeg codec name → ours
ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}
DEFAULT_FRAME_RATE = 25.0  # when the clip states none (a raw stream without VUI timing)
READ_AHEAD_S = 1.0  # stream time demuxed per worker-thread call


class FileError(Exception):
    """The clip cannot be opened or read on; the message says why."""


@dataclass(frozen=True, slots=True)
class ClipUnit:
    """One access unit of a clip, timed in seconds from the clip's start."""

    data: bytes
    key: bool
    pts: float
    dts: float


class ClipReader:
    """Demuxes a clip into Annex-B access units (blocking: call it from a worker thread).

    :meth:`close` waits for a :meth:`read` under way on another thread: FFmpeg must not have
    its demuxer freed under it.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._container = av.open(str(path), format=RAW_FORMATS.get(path.suffix.lower()))
        except (av.FFmpegError, OSError) as exc:
            raise FileError(f"cannot open {path.name}: {exc.strerror or exc}") from exc
        try:
            self._stream = self._video_stream(path)
        except FileError:
            self._container.close()
            raise
        name = self._stream.codec_context.name
        self.codec = CODECS[name]
        raw = self._container.format.name in ANNEXB_FILTERS
        self._filter = None if raw else BitStreamFilterContext(ANNEXB_FILTERS[name], self._stream)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.frame_s = 1.0 / float(rate) if rate else 1.0 / DEFAULT_FRAME_RATE
        self._packets = self._container.demux(self._stream)
        self._count = 0
        self._origin: int | None = None  # the first unit's pts in stream time-base ticks
        self._last_dts = -self.frame_s
        self.end_pts = 0.0  # the last unit's presentation time
        self._lock = threading.Lock()

    def _video_stream(self, path: Path) -> av.video.stream.VideoStream:
        if not self._container.streams.video:
            raise FileError(f"{path.name} holds no video stream")
        stream = self._container.streams.video[0]
        if stream.codec_context.name not in CODECS:
            raise FileError(f"{path.name} is {stream.codec_context.name}, not H.264 or H.265")
        return stream

    def read(self, seconds: float) -> tuple[list[ClipUnit], bool]:
        """The next units covering about ``seconds`` of stream time, and whether the clip ended.

        Raises :class:`FileError` when the data cannot be demuxed on.
        """
        with self._lock:
            return self._read(seconds)

    def _read(self, seconds: float) -> tuple[list[ClipUnit], bool]:
        units: list[ClipUnit] = []
        try:
            for packet in self._packets:
                for unit in self._annexb(packet):
                    units.append(self._timed(unit))
                if units and units[-1].dts - units[0].dts >= seconds:
                    return units, False
            if self._filter is not None:
                units.extend(self._timed(unit) for unit in self._filter.filter(None))
        except av.FFmpegError as exc:
            raise FileError(f"cannot read on after {self._count} access units: {exc.strerror or exc}") from exc
        return units, True

    def close(self) -> None:
        with self._lock:
            self._container.close()

    def _annexb(self, packet: av.Packet) -> list[av.Packet]:
        if packet.size == 0:
            return []  # the demuxer's end-of-stream marker
        return [packet] if self._filter is None else self._filter.filter(packet)

    def _timed(self, packet: av.Packet) -> ClipUnit:
        self._count += 1
        if packet.pts is None:  # raw streams carry no timestamps: one frame per unit, in order
            dts = pts = self._last_dts + self.frame_s
        else:
            if self._origin is None:
                self._origin = packet.pts
            base = float(packet.time_base)
            pts = (packet.pts - self._origin) * base
            dts = (packet.dts - self._origin) * base if packet.dts is not None else self._last_dts + self.frame_s
        self._last_dts = dts
        self.end_pts = max(self.end_pts, pts)
        return ClipUnit(bytes(packet), packet.is_keyframe, pts, dts)


class FileIngest:
    """Plays ``camera``'s clip into ``sink`` until it ends (or forever with ``loop``)."""

    packets = 0  # a clip's access units come without RTP packets

    def __init__(self, camera: CameraConfig, sink: IngestSink, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.camera = camera
        self._sink = sink
        self._clock = clock
        self._origin: float | None = None  # clock time of stream time 0 (realtime pace)

    async def run(self) -> None:
        """Play the clip; returns at its end unless looping (then runs until cancelled)."""
        loop = asyncio.get_running_loop()
        path = self.camera.file_path
        offset = 0.0  # stream time of the plays before this one
        plays = 0
        codec = None
        while True:
            try:
                reader = await loop.run_in_executor(None, ClipReader, path)
            except FileError as exc:
                self._sink.event(self.camera.id, "file_error", reason=str(exc))
                return
            try:
                if reader.codec != codec:
                    codec = reader.codec
                    self._sink.stream_started(self.camera.id, codec)
                    self._sink.event(self.camera.id, "connected", codec=codec, file=path.name)
                played = await self._play(reader, offset)
            finally:
                reader.close()
            plays += 1
            self._sink.event(self.camera.id, "end_of_file", plays=plays, looping=self.camera.loop and played > 0)
            if played == 0:
                self._sink.event(self.camera.id, "file_error", reason=f"{path.name}: no access unit could be read")
                return
            if not self.camera.loop:
                return
            offset += reader.end_pts + reader.frame_s

    async def _play(self, reader: ClipReader, offset: float) -> int:
        """Hand the clip's units to the sink, paced; returns how many."""
        loop = asyncio.get_running_loop()
        played = 0
        ended = False
        while not ended:
            try:
                units, ended = await loop.run_in_executor(None, reader.read, READ_AHEAD_S)
            except FileError as exc:
                self._sink.event(self.camera.id, "file_error", reason=str(exc))
                ended = True
                units = []
            for unit in units:
                await self._pace(offset + unit.dts)
                now = self._clock()
                self._sink.access_unit(self.camera.id, ReceivedAccessUnit(unit.data, unit.key, offset + unit.pts, now, time.time()))
                played += 1
        return played

    async def _pace(self, dts: float) -> None:
        if self.camera.pace == "fast":
            await self._sink.room(self.camera.id)
            return
        if self._origin is None:
            self._origin = self._clock() - dts
        delay = self._origin + dts - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
