"""Stand-ins for the GPU libraries, for the GPU code's own logic on a machine without a GPU
(tests/gpu checks the real libraries where there is one).

``fake_cupy``: CuPy as NumPy, its arrays of a type that lives in module ``cupy`` (so the code
takes them for device arrays) and that counts copies to the host, its streams and events
logging what was asked of them (``module.log``). ``fake_nvc``:
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


class CudaLog:
    """What the code asked of CUDA, in order: ``(operation, stream or event, ...)`` tuples,
    streams and events named by the order they were made (``s0``, ``e0``...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.streams = 0
        self.events = 0
        self.current: list[_Stream] = []


class _Event:
    def __init__(self, log: CudaLog, time_ms: float = 0.0) -> None:
        self.name = f"e{log.events}"
        log.events += 1
        self._log = log
        self.time_ms = time_ms
        self.done = True

    def synchronize(self) -> None:
        self._log.calls.append(("synchronize", self.name))


class _Stream:
    def __init__(self, log: CudaLog, non_blocking: bool = False) -> None:
        self.name = f"s{log.streams}"
        self.ptr = log.streams
        log.streams += 1
        self._log = log
        self.synchronized = 0
        self.clock_ms = 0.0  # each record moves the stream's clock on by a millisecond

    def __enter__(self) -> _Stream:
        self._log.current.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.current.pop()

    def synchronize(self) -> None:
        self.synchronized += 1

    def wait_event(self, event: _Event) -> None:
        self._log.calls.append(("wait", self.name, event.name))

    def record(self, event: _Event | None = None) -> _Event:
        event = event or _Event(self._log)
        self.clock_ms += 1.0
        event.time_ms = self.clock_ms
        self._log.calls.append(("record", self.name, event.name))
        return event


def fake_cupy() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.__getattr__ = lambda name: getattr(np, name)  # type: ignore[method-assign]
    module.asarray = lambda a, dtype=None: np.asarray(a, dtype=dtype).view(DeviceArray)
    module.from_dlpack = lambda a: np.from_dlpack(a).view(DeviceArray)
    module.ascontiguousarray = lambda a: np.ascontiguousarray(a).view(DeviceArray)
    log = module.log = CudaLog()
    module.cuda = types.SimpleNamespace(
        Stream=lambda non_blocking=False: _Stream(log, non_blocking),
        Event=lambda: _Event(log),
        get_elapsed_time=lambda start, end: end.time_ms - start.time_ms,
        get_current_stream=lambda: log.current[-1] if log.current else None,
    )
    DeviceArray.copies_to_host = 0
    return module


class PyNvVCException(Exception):
    pass


class PyNvVCExceptionUnsupported(Exception):
    """Not a PyNvVCException: PyNvVideoCodec registers its two exception types apart."""


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
    MAX_WIDTH = 8192  # what the fake NVDEC supports, like a real one's caps

    def __init__(self, **kwargs: Any) -> None:
        if kwargs["maxwidth"] > self.MAX_WIDTH:
            raise PyNvVCExceptionUnsupported(f"width {kwargs['maxwidth']} exceeds the decoder's {self.MAX_WIDTH}")
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
    module.PyNvVCExceptionUnsupported = PyNvVCExceptionUnsupported
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
