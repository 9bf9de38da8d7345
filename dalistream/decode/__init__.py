"""Per-camera frame sources (see :mod:`.source`): the implementations of each device in :data:`SOURCES`."""

from __future__ import annotations

from collections.abc import Mapping

from dalistream.device import CPU, GPU, DeviceError
from dalistream.metrics import Stages

from .gop import DaliGopFrameSource
from .nvdec import NvdecFrameSource
from .pyav import PyAvDecoder, PyAvFrameSource
from .source import (
    ArrayFullFrame, CropError, DecodeError, Decoded, FrameSelector, FrameSource, FrameSpec, FullFrame, SampledFrame, StreamStart,
)

SOURCES: Mapping[str, Mapping[str, type[FrameSource]]] = {
    CPU: {"pyav": PyAvFrameSource},
    GPU: {"nvdec": NvdecFrameSource, "dali-gop": DaliGopFrameSource},
}
"""The frame sources of each device this build can decode on, by name; the first is the default."""


def create_source(
    device: str,
    camera: str,
    selector: FrameSelector,
    spec: FrameSpec,
    stages: Stages,
    gpu_decode: str = "nvdec",
) -> FrameSource:
    """``camera``'s frame source on ``device``: the one ``gpu_decode`` names where the device
    has it (the GPU), else the device's default."""
    try:
        sources = SOURCES[device]
    except KeyError:
        raise DeviceError(f"no frame source for device {device!r} in this build") from None
    source = sources.get(gpu_decode) or next(iter(sources.values()))
    return source(camera, selector, spec, stages)


__all__ = [
    "SOURCES",
    "ArrayFullFrame",
    "CropError",
    "DaliGopFrameSource",
    "DecodeError",
    "Decoded",
    "FrameSelector",
    "FrameSource",
    "FrameSpec",
    "FullFrame",
    "NvdecFrameSource",
    "PyAvDecoder",
    "PyAvFrameSource",
    "SampledFrame",
    "StreamStart",
    "create_source",
]
