"""Per-camera frame sources (see :mod:`.source`), one implementation per device in :data:`SOURCES`."""

from __future__ import annotations

from collections.abc import Mapping

from dalistream.device import CPU, GPU, DeviceError
from dalistream.metrics import Stages

from .nvdec import NvdecFrameSource
from .pyav import PyAvDecoder, PyAvFrameSource
from .source import DecodeError, Decoded, FrameSelector, FrameSource, FrameSpec, SampledFrame, StreamStart

SOURCES: Mapping[str, type[FrameSource]] = {CPU: PyAvFrameSource, GPU: NvdecFrameSource}
"""The frame source for each device this build can decode on."""


def create_source(device: str, camera: str, selector: FrameSelector, spec: FrameSpec, stages: Stages) -> FrameSource:
    """``camera``'s frame source on ``device``."""
    try:
        source = SOURCES[device]
    except KeyError:
        raise DeviceError(f"no frame source for device {device!r} in this build") from None
    return source(camera, selector, spec, stages)


__all__ = [
    "SOURCES",
    "DecodeError",
    "Decoded",
    "FrameSelector",
    "FrameSource",
    "FrameSpec",
    "NvdecFrameSource",
    "PyAvDecoder",
    "PyAvFrameSource",
    "SampledFrame",
    "StreamStart",
    "create_source",
]
