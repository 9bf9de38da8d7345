"""Stand-ins for the GPU libraries, for the GPU code's own logic on a machine without a GPU
(tests/gpu checks the real libraries where there is one). Each offers only names the real
package has, and behaves as it does where the code depends on it:
tests/unit/test_gpu_standins.py holds them to the installed CuPy and to PyNvVideoCodec's
real bindings.

``fake_cupy``: CuPy over NumPy. Its arrays (:class:`DeviceArray`) are not NumPy arrays: like
CuPy's they refuse implicit conversion to the host (``np.asarray(a)`` raises ``TypeError``),
refuse NumPy arrays as operands, dispatch NumPy's functions and ufuncs to the module's own,
and count every host round trip (``get()``, ``bool``/``int``/``float``, ``item``, ``tolist``,
and the operations whose result's size is data-dependent, which make CuPy wait for the device:
``nonzero``, ``unique``, boolean-mask indexing ...). Streams and events log what was asked of
them. ``fake_nvc``: PyNvVideoCodec's decoder API (``CreateDecoder``, ``PacketData``,
``setReconfigParams``, ``Decode``) over FFmpeg, output as RGB at the decoder's target size.
"""

from __future__ import annotations

import ctypes
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox

IMPLICIT_CONVERSION = "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
"""CuPy's own message (its ``ndarray.__array__``)."""

# What the stand-in offers: every name here must exist in the real CuPy (the conformance test).
FUNCTIONS = (
    "abs", "all", "any", "arange", "argmax", "argsort", "broadcast_to", "clip", "concatenate", "cumsum",
    "empty", "exp", "full", "isfinite", "lexsort", "logical_and", "logical_not", "maximum", "minimum", "ones",
    "searchsorted", "sort", "stack", "sum", "take_along_axis", "triu", "where", "zeros", "zeros_like",
)
SYNCING_FUNCTIONS = ("argwhere", "bincount", "compress", "extract", "flatnonzero", "nonzero", "unique")
"""Functions whose result's size depends on the data: CuPy waits for the device to know it."""
UPLOADS = ("array", "asarray", "ascontiguousarray")
CONSTANTS = ("bool_", "float16", "float32", "float64", "inf", "int32", "int64", "intp", "nan", "newaxis", "uint8")
METHODS = (
    "all", "any", "argmax", "argsort", "astype", "copy", "cumsum", "max", "min", "ravel", "reshape", "sum",
    "transpose", "view",
)
ATTRIBUTES = ("T", "dtype", "itemsize", "nbytes", "ndim", "shape", "size", "strides")
ROUND_TRIPS = ("get", "item", "tolist", "__bool__", "__int__", "__float__")
_OPERATORS = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift",
    "lt", "le", "gt", "ge", "eq", "ne",
)


class Device:
    """What the code asked of the stand-in device, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []  # stream and event operations
        self.round_trips: list[str] = []  # every wait for the device's data, by what caused it
        self.names: dict[int, str] = {}  # id(stream or event) -> "s0", "e0" ...
        self.current: list[Stream] = []
        self.streams = 0
        self.events = 0

    def name(self, obj: object) -> str:
        return self.names[id(obj)]

    def transfers(self) -> int:
        """Copies to the host (``get()``)."""
        return self.round_trips.count("get")


def _unwrap(value: Any, device: Device, upload: bool = False) -> Any:
    if isinstance(value, DeviceArray):
        return value._host
    if isinstance(value, np.ndarray) and value.ndim > 0 and not upload:
        raise TypeError(f"Unsupported type {type(value)}")  # CuPy takes no NumPy array as an operand
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item, device, upload) for item in value)
    return value


def _wrap(value: Any, device: Device) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):  # CuPy's reductions give 0-d device arrays, not scalars
        return DeviceArray(np.asarray(value), device)
    if isinstance(value, tuple):
        return tuple(_wrap(item, device) for item in value)
    if isinstance(value, list):
        return [_wrap(item, device) for item in value]
    return value


class DeviceArray:
    """An array on the stand-in device (see the module docstring)."""

    __array_priority__ = 100  # as CuPy's: NumPy scalars defer to it

    def __init__(self, host: np.ndarray, device: Device) -> None:
        self._host = host
        self._device = device

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(IMPLICIT_CONVERSION)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        unwrapped = [_unwrap(value, self._device) for value in inputs]
        return _wrap(getattr(ufunc, method)(*unwrapped, **kwargs), self._device)

    def __array_function__(self, func: Callable[..., Any], types: Any, args: Any, kwargs: Any) -> Any:
        module = _MODULES[id(self._device)]
        if not hasattr(module, func.__name__):
            return NotImplemented
        return getattr(module, func.__name__)(*args, **kwargs)

    def get(self, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> np.ndarray:
        self._device.round_trips.append("get")
        return self._host.copy()

    def item(self) -> Any:
        self._device.round_trips.append("item")
        return self._host.item()

    def tolist(self) -> Any:
        self._device.round_trips.append("tolist")
        return self._host.tolist()

    def __bool__(self) -> bool:
        self._device.round_trips.append("__bool__")
        return bool(self._host)

    def __int__(self) -> int:
        self._device.round_trips.append("__int__")
        return int(self._host)

    def __float__(self) -> float:
        self._device.round_trips.append("__float__")
        return float(self._host)

    def __len__(self) -> int:
        return len(self._host)

    def __getitem__(self, key: Any) -> DeviceArray:
        key = _unwrap(key, self._device, upload=True)
        masks = key if isinstance(key, tuple) else (key,)
        if any(isinstance(part, np.ndarray) and part.dtype == bool for part in masks):
            self._device.round_trips.append("boolean index")
        return DeviceArray(self._host[key], self._device)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._host[_unwrap(key, self._device, upload=True)] = _unwrap(value, self._device)

    def __neg__(self) -> DeviceArray:
        return DeviceArray(-self._host, self._device)

    def __invert__(self) -> DeviceArray:
        return DeviceArray(~self._host, self._device)

    def __abs__(self) -> DeviceArray:
        return DeviceArray(abs(self._host), self._device)

    def __getattr__(self, name: str) -> Any:
        if name in ATTRIBUTES:
            return _wrap(getattr(self._host, name), self._device)
        if name in METHODS:
            method = getattr(self._host, name)
            return lambda *args, **kwargs: _wrap(method(*_unwrap(args, self._device), **kwargs), self._device)
        raise AttributeError(f"the CuPy stand-in's arrays have no {name!r}")

    def __repr__(self) -> str:
        return f"DeviceArray({self._host!r})"


def _operator(name: str, reflected: bool) -> Callable[[DeviceArray, Any], Any]:
    dunder = f"__r{name}__" if reflected else f"__{name}__"

    def apply(self: DeviceArray, other: Any) -> Any:
        result = getattr(self._host, dunder)(_unwrap(other, self._device))
        return NotImplemented if result is NotImplemented else _wrap(result, self._device)

    return apply


for _name in _OPERATORS:
    setattr(DeviceArray, f"__{_name}__", _operator(_name, False))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(DeviceArray, f"__r{_name}__", _operator(_name, True))
DeviceArray.__module__ = "cupy"  # what the code's array_module() looks at
DeviceArray.__hash__ = None  # type: ignore[assignment]


class Event:
    """``cupy.cuda.Event``: recorded on a stream's clock; always done."""

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False, *, _device: Device) -> None:
        _device.names[id(self)] = f"e{_device.events}"
        _device.events += 1
        self._device = _device
        self._time_ms = 0.0

    @property
    def done(self) -> bool:
        return True

    def record(self, stream: Stream | None = None) -> None:
        (stream or _current(self._device)).record(self)

    def synchronize(self) -> None:
        self._device.calls.append(("synchronize", self._device.name(self)))


class Stream:
    """``cupy.cuda.Stream``: a context manager making itself current; each record moves its
    clock on by a millisecond."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False, priority: Any = None,
                 *, _device: Device) -> None:
        _device.names[id(self)] = "null" if null else f"s{_device.streams}"
        self.ptr = 0 if null else _device.streams + 1
        _device.streams += 0 if null else 1
        self._device = _device
        self._clock_ms = 0.0

    def __enter__(self) -> Stream:
        self._device.current.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._device.current.pop()

    def synchronize(self) -> None:
        self._device.calls.append(("synchronize", self._device.name(self)))

    def wait_event(self, event: Event) -> None:
        self._device.calls.append(("wait", self._device.name(self), self._device.name(event)))

    def record(self, event: Event | None = None) -> Event:
        event = event or Event(_device=self._device)
        self._clock_ms += 1.0
        event._time_ms = self._clock_ms
        self._device.calls.append(("record", self._device.name(self), self._device.name(event)))
        return event


def _current(device: Device) -> Stream:
    return device.current[-1] if device.current else _NULL_STREAMS[id(device)]


_MODULES: dict[int, types.ModuleType] = {}
_NULL_STREAMS: dict[int, Stream] = {}


def _function(name: str, device: Device) -> Callable[..., Any]:
    implementation = getattr(np, name)
    upload = name in UPLOADS

    def call(*args: Any, **kwargs: Any) -> Any:
        if name in SYNCING_FUNCTIONS:
            device.round_trips.append(name)
        if name == "argsort" or (name == "sort" and isinstance(args[0], DeviceArray)):
            kwargs.setdefault("kind", "stable")  # CuPy sorts stably (CUB radix sort)
        return _wrap(implementation(*_unwrap(args, device, upload), **_unwrap(kwargs, device, upload)), device)

    call.__name__ = name
    return call


def fake_cupy() -> types.ModuleType:
    """A fresh CuPy stand-in; its :class:`Device` (log and round trips) is ``device_of(module)``."""
    device = Device()
    module = types.ModuleType("cupy")
    for name in (*FUNCTIONS, *SYNCING_FUNCTIONS, *UPLOADS):
        setattr(module, name, _function(name, device))
    for name in CONSTANTS:
        setattr(module, name, getattr(np, name))
    module.ndarray = DeviceArray
    module.asnumpy = lambda a, stream=None, order="C", out=None, blocking=True: a.get()
    module.from_dlpack = lambda array, *, device=None, copy=None: DeviceArray(np.from_dlpack(array), _device_of(module))
    null = Stream(null=True, _device=device)
    stream_class = type("Stream", (Stream,), {"null": null, "__init__": _bound_init(Stream.__init__, device)})
    event_class = type("Event", (Event,), {"__init__": _bound_init(Event.__init__, device)})
    module.cuda = types.SimpleNamespace(
        Stream=stream_class,
        Event=event_class,
        get_elapsed_time=lambda start_event, end_event: end_event._time_ms - start_event._time_ms,
        get_current_stream=lambda device_id=-1: _current(device),
    )
    module._device = device
    _MODULES[id(device)] = module
    _NULL_STREAMS[id(device)] = null
    return module


def _bound_init(init: Callable[..., None], device: Device) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        init(self, *args, **kwargs, _device=device)

    return __init__


def _device_of(module: types.ModuleType) -> Device:
    return module._device


def device_of(module: types.ModuleType) -> Device:
    """The stand-in device behind a :func:`fake_cupy` module."""
    return _device_of(module)


class PyNvVCException(Exception):
    pass


class PyNvVCExceptionUnsupported(Exception):
    """Not a PyNvVCException: PyNvVideoCodec registers its two exception types apart."""


SEQUENCE_REFUSED = "HandleVideoSequence : Resolution not supported on this GPU"
NOT_INITIALIZED = "HandlePictureDecode : Decoder not initialized."
RESIZE_REFUSED = "Resize dimensions must be lower than max width and height, please recreate decoder instance"


class PacketData:
    def __init__(self) -> None:
        self.bsl_data = 0
        self.bsl = 0
        self.pts = 0
        self.decode_flag = 0


class DecodedFrame:
    """A decoded surface: its shape, the packet's pts, DLPack."""

    def __init__(self, pixels: np.ndarray, timestamp: int) -> None:
        self._pixels = pixels
        self.shape = list(pixels.shape)
        self.timestamp = timestamp

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._pixels.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._pixels.__dlpack_device__()


class PyNvDecoder:
    """PyNvVideoCodec's decoder as NvDecoder behaves: created without looking at the stream;
    the first sequence header beyond the GPU's caps fails that ``Decode`` (its sequence
    callback), after which every picture fails with "Decoder not initialized."."""

    _max_width = 8192  # the stand-in GPU's caps (GetDecoderCaps' nMaxWidth)

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._target: tuple[int, int] | None = None
        self._failed = False
        self._ffmpeg = PyAvDecoder({"H264": "H264", "HEVC": "H265"}[kwargs["codec"]])

    def setReconfigParams(self, width: int = 0, height: int = 0) -> int:  # noqa: N802 (PyNvVideoCodec's name)
        if width > self._kwargs["maxwidth"] or height > self._kwargs["maxheight"]:
            raise RuntimeError(RESIZE_REFUSED)  # a std::runtime_error in the bindings
        self._target = (width, height)
        return 0

    def Decode(self, packet: PacketData) -> list[DecodedFrame]:  # noqa: N802
        if self._failed:
            raise PyNvVCException(NOT_INITIALIZED)
        if packet.bsl:
            frames = self._ffmpeg.decode(ctypes.string_at(packet.bsl_data, packet.bsl), packet.pts)
        else:
            frames = self._ffmpeg.flush()
        out = []
        for frame in frames:
            if frame.width > self._max_width:
                self._failed = True
                raise PyNvVCException(SEQUENCE_REFUSED)
            if frame.width > self._kwargs["maxwidth"] or frame.height > self._kwargs["maxheight"]:
                raise PyNvVCException(f"{frame.width}x{frame.height} exceeds the decoder's maximum")
            width, height = self._target or (frame.width, frame.height)
            letterbox = Letterbox(frame.width, frame.height, width, height, width, height)
            out.append(DecodedFrame(PyAvDecoder.convert(frame, letterbox, "rgb24"), frame.pts))
        return out


def decoder_settings(decoder: PyNvDecoder) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """What a stand-in decoder was created with, and the size ``setReconfigParams`` set."""
    return decoder._kwargs, decoder._target


def fake_nvc() -> types.ModuleType:
    module = types.ModuleType("PyNvVideoCodec")
    made: list[PyNvDecoder] = []
    module.PyNvVCException = PyNvVCException
    module.PyNvVCExceptionUnsupported = PyNvVCExceptionUnsupported
    module.PacketData = PacketData
    module.DecodedFrame = DecodedFrame
    module.PyNvDecoder = PyNvDecoder
    module.cudaVideoCodec = types.SimpleNamespace(H264="H264", HEVC="HEVC")
    module.OutputColorType = types.SimpleNamespace(RGB="RGB")
    module.DisplayDecodeLatencyType = types.SimpleNamespace(LOW="LOW")
    module.VideoPacketFlag = types.SimpleNamespace(ENDOFPICTURE=1)

    def CreateDecoder(  # noqa: N802 -- the real one's first overload, parameter for parameter
        gpuid: int = 0,
        codec: Any = "H264",
        cudacontext: int = 0,
        cudastream: int = 0,
        usedevicememory: bool = False,
        maxwidth: int = 0,
        maxheight: int = 0,
        outputColorType: Any = "NATIVE",  # noqa: N803
        enableSEIMessage: bool = False,  # noqa: N803
        bWaitForSessionWarmUp: bool = False,  # noqa: N803
        latency: Any = "NATIVE",
        enableDecodeStats: bool = False,  # noqa: N803
    ) -> PyNvDecoder:
        decoder = PyNvDecoder(codec=codec, maxwidth=maxwidth, maxheight=maxheight, cudastream=cudastream,
                              usedevicememory=usedevicememory, outputColorType=outputColorType, latency=latency)
        made.append(decoder)
        return decoder

    module.CreateDecoder = CreateDecoder
    module._made = made
    return module


def install(monkeypatch: Any, *modules: types.ModuleType) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module.__name__, module)
