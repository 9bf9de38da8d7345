"""Small synthetic clips for tests: a moving gradient, an IDR every ``GOP`` frames, B-frames if asked.

Raw Annex-B (``container=None``: each segment a fresh encoder run, so a resolution change comes
with new parameter sets at an IDR) or muxed into MP4 / Matroska.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 25
GOP = 10

_ENCODERS = {
    "h264": ("libx264", "x264-params", "scenecut=0:b-adapt=0"),
    "h265": ("libx265", "x265-params", "scenecut=0:b-adapt=0:log-level=error"),
}


def _frames(width: int, height: int, count: int):
    y, x = np.mgrid[0:height, 0:width]
    for index in range(count):
        image = ((x + y + 4 * index) % 256).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.dstack([image, image[::-1], image[:, ::-1]]), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = index
        yield frame


def _configure(context: av.CodecContext, codec: str, width: int, height: int, raw: bool, gop: int, bframes: int) -> None:
    _, params_key, params = _ENCODERS[codec]
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.framerate = Fraction(FPS)
    context.time_base = Fraction(1, FPS)
    params += f":keyint={gop}:min-keyint={gop}:bframes={bframes}" + (":repeat-headers=1" if raw else "")
    context.options = {"preset": "ultrafast", params_key: params}


def encode(
    path: Path,
    segments: list[tuple[int, int, int]],
    codec: str = "h264",
    container: str | None = None,
    *,
    gop: int = GOP,
    bframes: int = 0,
) -> Path:
    """For each (width, height, frames) of ``segments``, that many frames; returns ``path``."""
    encoder = _ENCODERS[codec][0]
    if container is None:
        with path.open("wb") as out:
            for width, height, count in segments:
                context = av.CodecContext.create(encoder, "w")
                _configure(context, codec, width, height, True, gop, bframes)
                for frame in _frames(width, height, count):
                    for packet in context.encode(frame):
                        out.write(bytes(packet))
                for packet in context.encode(None):
                    out.write(bytes(packet))
        return path
    ((width, height, count),) = segments
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(encoder, rate=FPS)
        _configure(stream.codec_context, codec, width, height, False, gop, bframes)
        for frame in _frames(width, height, count):
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path
