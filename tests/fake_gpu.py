"""Stand-ins for the GPU libraries, for the GPU code's own logic on a machine without a GPU
(tests/gpu checks the real libraries where there is one).

``fake_cupy``: CuPy as NumPy, its arrays of a type that lives in module ``cupy`` (so the code
takes them for device arrays) and that counts copies to the host. ``fake_nvc``:
PyNvVideoCodec's decoder API (``CreateDecoder``, ``PacketData``, ``setReconfigParams``,
``Decode``) over FFmpeg, output as RGB at the decoder's target size.
"""

from __future__ import annotations

import ctypes
import sys
import types
from typing import Any

import numpy as np

from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox


class DeviceArray(np.ndarray):
    """An array the code takes for CuPy's (its type lives in module ``cupy``)."""

    copies_to_host = 0

    def get(self) -> np.ndarray:
        DeviceArray.copies_to_host += 1
        return np.asarray(self)


DeviceArray.__module__ = "cupy"


class _Stream:
    ptr = 0

    def __init__(self, non_blocking: bool = False) -> None:
        self.synchronized = 0

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def synchronize(self) -> None:
        self.synchronized += 1


def fake_cupy() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.__getattr__ = lambda name: getattr(np, name)  # type: ignore[method-assign]
    module.asarray = lambda a, dtype=None: np.asarray(a, dtype=dtype).view(DeviceArray)
    module.from_dlpack = lambda a: np.from_dlpack(a).view(DeviceArray)
    module.ascontiguousarray = lambda a: np.ascontiguousarray(a).view(DeviceArray)
    module.cuda = types.SimpleNamespace(Stream=_Stream)
    DeviceArray.copies_to_host = 0
    return module


class PyNvVCException(Exception):
    pass


class _PacketData:
    def __init__(self) -> None:
        self.bsl_data = 0
        self.bsl = 0
        self.pts = 0
        self.decode_flag = 0


class _Frame:
    """A decoded surface: its shape, the packet's pts, DLPack."""

    def __init__(self, pixels: np.ndarray, timestamp: int) -> None:
        self._pixels = pixels
        self.shape = pixels.shape
        self.timestamp = timestamp

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._pixels.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._pixels.__dlpack_device__()


class FakeNvdecDecoder:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.target: tuple[int, int] | None = None
        self._ffmpeg = PyAvDecoder({"H264": "H264", "HEVC": "H265"}[kwargs["codec"]])

    def setReconfigParams(self, width: int, height: int) -> None:  # noqa: N802 (PyNvVideoCodec's name)
        if width > self.kwargs["maxwidth"] or height > self.kwargs["maxheight"]:
            raise PyNvVCException("Resize dimensions must be lower than max width and height")
        self.target = (width, height)

    def Decode(self, packet: _PacketData) -> list[_Frame]:  # noqa: N802
        if packet.bsl:
            frames = self._ffmpeg.decode(ctypes.string_at(packet.bsl_data, packet.bsl), packet.pts)
        else:
            frames = self._ffmpeg.flush()
        out = []
        for frame in frames:
            if frame.width > self.kwargs["maxwidth"] or frame.height > self.kwargs["maxheight"]:
                raise PyNvVCException(f"{frame.width}x{frame.height} exceeds the decoder's maximum")
            width, height = self.target or (frame.width, frame.height)
            letterbox = Letterbox(frame.width, frame.height, width, height, width, height)
            out.append(_Frame(PyAvDecoder.convert(frame, letterbox, "rgb24"), frame.pts))
        return out


def fake_nvc() -> types.ModuleType:
    module = types.ModuleType("PyNvVideoCodec")
    module.made = []  # every decoder created, in order
    module.PyNvVCException = PyNvVCException
    module.PacketData = _PacketData
    module.cudaVideoCodec = types.SimpleNamespace(H264="H264", HEVC="HEVC")
    module.OutputColorType = types.SimpleNamespace(RGB="RGB")
    module.DisplayDecodeLatencyType = types.SimpleNamespace(LOW="LOW")
    module.VideoPacketFlag = types.SimpleNamespace(ENDOFPICTURE=1)

    def create_decoder(**kwargs: Any) -> FakeNvdecDecoder:
        decoder = FakeNvdecDecoder(**kwargs)
        module.made.append(decoder)
        return decoder

    module.CreateDecoder = create_decoder
    return module


def install(monkeypatch: Any, *modules: types.ModuleType) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module.__name__, module)
