"""The GPU stand-ins (``fake_gpu``) offer only what the real packages have, and say so in a test
that fails when they differ: CuPy against the installed CuPy (it imports without a GPU), and
PyNvVideoCodec against its real bindings read from the pinned wheel (``real_api``). The code's
own uses of CuPy's names are checked against the installed CuPy too."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

import fake_gpu
from conftest import ROOT, require
from real_api import pybind_overloads, pynvvideocodec_api

WHEELS = ROOT / ".cache" / "wheels"


@pytest.fixture(scope="module")
def real_cupy() -> types.ModuleType:
    try:
        import cupy as module
    except ImportError:
        module = None
    require(module is not None, "CuPy is not installed (scripts/setup.sh --test installs cupy-cuda12x)")
    return module


def cupy_gaps(stand_in: types.ModuleType, real: types.ModuleType) -> list[str]:
    """Names the CuPy stand-in offers that the real CuPy lacks, and signatures that differ."""
    gaps = [f"cupy.{name}" for name in (*fake_gpu.FUNCTIONS, *fake_gpu.SYNCING_FUNCTIONS, *fake_gpu.UPLOADS, *fake_gpu.CONSTANTS)
            if not hasattr(real, name)]
    gaps += [f"cupy.{name}" for name in vars(stand_in) if not name.startswith("_") and not hasattr(real, name)]
    gaps += [f"cupy.ndarray.{name}" for name in (*fake_gpu.METHODS, *fake_gpu.ATTRIBUTES, *fake_gpu.ROUND_TRIPS, "__array_function__",
                                                 "__array_ufunc__", "__array__") if not hasattr(real.ndarray, name)]
    null = real.cuda.Stream.null
    for name in vars(stand_in.cuda):
        if not hasattr(real.cuda, name):
            gaps.append(f"cupy.cuda.{name}")
    for kind, instance in (("Stream", null), ("Event", None)):
        fake_class, real_class = getattr(stand_in.cuda, kind), getattr(real.cuda, kind)
        offered = {name for name in dir(fake_class) if not name.startswith("_")}
        real_names = set(dir(real_class)) | (set(vars(instance)) if instance is not None else {"ptr"})
        gaps += [f"cupy.cuda.{kind}.{name}" for name in sorted(offered - real_names)]
        fake_parameters = [p for p in inspect.signature(getattr(fake_gpu, kind).__init__).parameters if p not in ("self", "_device")]
        if fake_parameters != list(inspect.signature(real_class).parameters):
            gaps.append(f"cupy.cuda.{kind}{fake_parameters}")
    return gaps


def test_the_cupy_stand_in_offers_only_what_cupy_has(real_cupy: types.ModuleType) -> None:
    assert cupy_gaps(fake_gpu.fake_cupy(), real_cupy) == []


def test_the_check_catches_an_invented_cupy_name(real_cupy: types.ModuleType) -> None:
    stand_in = fake_gpu.fake_cupy()
    stand_in.fused_nms = lambda *args: None
    stand_in.cuda.Stream.wait_for_everything = lambda self: None
    assert cupy_gaps(stand_in, real_cupy) == ["cupy.fused_nms", "cupy.cuda.Stream.wait_for_everything"]


def test_the_stand_in_refuses_implicit_conversion_as_cupy_does(real_cupy: types.ModuleType) -> None:
    """A real (empty) CuPy array needs no GPU when its memory is an unowned null pointer."""
    nowhere = real_cupy.cuda.MemoryPointer(real_cupy.cuda.UnownedMemory(0, 0, None, 0), 0)
    real = real_cupy.ndarray((0,), dtype=np.float32, memptr=nowhere)
    with pytest.raises(TypeError) as refused:
        np.asarray(real)
    assert str(refused.value) == fake_gpu.IMPLICIT_CONVERSION


def _cupy_uses(path: Path) -> list[tuple[int, list[str]]]:
    """Attribute chains read from names bound to CuPy in ``path`` (``cupy.x.y``, ``self._cupy.x``),
    and from ``xp`` (NumPy or CuPy)."""
    tree = ast.parse(path.read_text())
    inner = {id(child) for parent in ast.walk(tree) if isinstance(parent, ast.Attribute) for child in [parent.value]}
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in ("cupy", "xp"):
            uses.append((node.lineno, [base.id, *chain]))
        elif isinstance(base, ast.Name) and base.id == "self" and chain[0] == "_cupy":
            uses.append((node.lineno, ["cupy", *chain[1:]]))
    return uses


def test_every_cupy_name_the_code_uses_exists(real_cupy: types.ModuleType) -> None:
    missing = []
    sources = [path for path in (ROOT / "dalistream").rglob("*.py") if re.search(r"\b(cupy|xp)\.", path.read_text())]
    assert len(sources) >= 6
    for path in sources:
        for line, chain in _cupy_uses(path):
            modules = (real_cupy,) if chain[0] == "cupy" else (real_cupy, np)
            for module in modules:
                target = module
                for name in chain[1:]:
                    if name in ("ptr", "data") and target is not module:
                        break  # attributes of instances (a stream's ptr, an array's data)
                    target = getattr(target, name, None)
                    if target is None:
                        missing.append(f"{path.relative_to(ROOT)}:{line} {'.'.join(chain)} ({module.__name__})")
                        break
    assert missing == []


# --------------------------------------------------------------------------- PyNvVideoCodec


@pytest.fixture(scope="module")
def real_nvc(tmp_path_factory: pytest.TempPathFactory) -> dict:
    wheels = sorted(WHEELS.glob("pynvvideocodec-*.whl"))
    require(len(wheels) == 1, f"the pinned PyNvVideoCodec wheel is not in {WHEELS} (scripts/setup.sh --test downloads it)")
    require(shutil.which("gcc") is not None and shutil.which("nm") is not None, "gcc and nm are needed to load the bindings")
    messages = [fake_gpu.SEQUENCE_REFUSED.split(" : ")[1], fake_gpu.NOT_INITIALIZED.split(" : ")[1], fake_gpu.RESIZE_REFUSED]
    return pynvvideocodec_api(wheels[0], tmp_path_factory.mktemp("pynvvideocodec"), messages)


def nvc_gaps(stand_in: types.ModuleType, real: dict) -> list[str]:
    """What the PyNvVideoCodec stand-in offers that the real bindings lack or shape otherwise."""
    gaps = [name for name in vars(stand_in) if not name.startswith("_") and name not in real["names"]]
    for name, value in vars(stand_in).items():
        if isinstance(value, types.SimpleNamespace):
            gaps += [f"{name}.{member}" for member in vars(value) if member not in real["enums"].get(name, [])]
    overloads = pybind_overloads(real["functions"]["CreateDecoder"], "CreateDecoder")
    if list(inspect.signature(stand_in.CreateDecoder).parameters) not in overloads:
        gaps.append(f"CreateDecoder{list(inspect.signature(stand_in.CreateDecoder).parameters)}")
    for cls in ("PyNvDecoder", "DecodedFrame", "PacketData"):
        fake = getattr(stand_in, cls)
        offered = [name for name in dir(fake) if not name.startswith("_") or name.startswith("__dlpack")]
        if cls == "PacketData":
            offered = list(vars(fake()))
        elif cls == "DecodedFrame":
            offered += list(vars(fake(np.zeros((2, 2, 3), np.uint8), 0)))
        gaps += [f"{cls}.{name}" for name in offered if not name.startswith("_") or name.startswith("__dlpack")
                 if name not in real["classes"][cls]["attributes"]]
    for method in ("setReconfigParams", "Decode"):
        real_parameters = pybind_overloads(real["classes"]["PyNvDecoder"]["docs"][method], method)
        fake_parameters = [p for p in inspect.signature(getattr(stand_in.PyNvDecoder, method)).parameters]
        if method == "setReconfigParams" and fake_parameters not in real_parameters:
            gaps.append(f"PyNvDecoder.{method}{fake_parameters}")
    for exception in ("PyNvVCException", "PyNvVCExceptionUnsupported"):
        fake_bases = [base.__name__ for base in getattr(stand_in, exception).__mro__[1:]]
        if fake_bases != real["classes"][exception]["bases"]:
            gaps.append(f"{exception} bases {fake_bases}")
    gaps += [f"message {message!r}" for message, found in real["messages"].items() if not found]
    return gaps


def test_the_pynvvideocodec_stand_in_offers_only_what_the_bindings_have(real_nvc: dict) -> None:
    assert nvc_gaps(fake_gpu.fake_nvc(), real_nvc) == []
    assert "-> int" in real_nvc["classes"]["PyNvDecoder"]["docs"]["setReconfigParams"]
    assert inspect.signature(fake_gpu.PyNvDecoder.setReconfigParams).return_annotation in (int, "int")


def test_the_check_catches_an_invented_pynvvideocodec_name(real_nvc: dict) -> None:
    stand_in = fake_gpu.fake_nvc()
    stand_in.DecodeAll = lambda *args: []
    stand_in.VideoPacketFlag.KEYFRAME = 8
    stand_in.PyNvVCExceptionUnsupported = type("PyNvVCExceptionUnsupported", (fake_gpu.PyNvVCException,), {})
    assert nvc_gaps(stand_in, real_nvc) == [
        "DecodeAll", "VideoPacketFlag.KEYFRAME",
        "PyNvVCExceptionUnsupported bases ['PyNvVCException', 'Exception', 'BaseException', 'object']",
    ]


def test_the_code_calls_pynvvideocodec_as_the_bindings_take_it(real_nvc: dict) -> None:
    """Every attribute the NVDEC source and the capacity plan read from the module exists."""
    source = (ROOT / "dalistream" / "decode" / "nvdec.py").read_text()
    used = set(re.findall(r"\b_?nvc\.(\w+)", source))
    assert used >= {"CreateDecoder", "PacketData", "cudaVideoCodec", "VideoPacketFlag", "GetDecoderCaps"}
    assert used <= set(real_nvc["names"])
    for enum, member in re.findall(r"\b_?nvc\.(\w+)\.(\w+)", source):
        assert member in real_nvc["enums"][enum], f"{enum}.{member}"
