"""Extract the TensorRT Python API facts the tests hold the code to, from the real bindings wheel.

TensorRT's Python bindings (``tensorrt-cu12-bindings`` on PyPI, about 1.3 MB) cannot be imported
without ``libnvinfer``, which only comes with ``tensorrt-cu12-libs`` (an sdist that downloads
from NVIDIA's own index). Their module, though, needs only nine entry points of those libraries
to load (``createInferBuilder_INTERNAL`` and the like; every other call goes through the objects
they return). So this script compiles empty stand-ins for those libraries (functions that return
NULL, never called while the module registers its classes), imports the real bindings in a child
process, and writes what pybind11 registered: every class, its bases, and each member's kind
(method, property, attribute, class) with the type its docstring signature returns, and the value
of each enum member.

    pip download --no-deps tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu12-bindings==11.4.0.106 -d /tmp/trt
    python scripts/tensorrt_api.py /tmp/trt/tensorrt_cu12_bindings-*.whl --out tests/api

Needs a C compiler (``cc``). Writes ``tests/api/tensorrt-<major>.<minor>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# What the bindings' module needs from libnvinfer, libnvinfer_plugin and libnvonnxparser to load.
ENTRY_POINTS = (
    "createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL", "createNvOnnxParser_INTERNAL", "getBuilderPluginRegistry",
    "getNvOnnxParserVersion", "getPluginRegistry", "initLibNvInferPlugins",
)
LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")

# Runs in the child, with the stand-in libraries on LD_LIBRARY_PATH: prints the facts as JSON.
DUMP = r'''
import ctypes, inspect, json, re, sys, types
import tensorrt_bindings as trt

PREFIX = "tensorrt_bindings.tensorrt."
BUILTINS = {"bool", "int", "float", "str", "bytes", "None"}
SKIP = re.compile(r"^(_pybind11.*|__pybind11.*|__doc__|__module__|__dict__|__weakref__)$")
classes = {}

def has_buffer(cls):
    # PyTypeObject.tp_as_buffer (21st slot) -> PyBufferProcs.bf_getbuffer: set for buffer-protocol classes.
    procs = ctypes.c_void_p.from_address(id(cls) + 20 * ctypes.sizeof(ctypes.c_void_p)).value
    return bool(procs and ctypes.c_void_p.from_address(procs).value)

def type_name(text):
    text = text.strip()
    text = {"typing.SupportsInt": "int", "typing.SupportsFloat": "float"}.get(text, text)
    if text.startswith(PREFIX) and re.fullmatch(r"[\w.]+", text[len(PREFIX):]):
        return text[len(PREFIX):]
    return text if text in BUILTINS else "Any"

def returns(doc):
    """The return type of a pybind11 docstring signature (all overloads agreeing), else Any."""
    lines = (doc or "").splitlines()
    signatures = [l for l in lines if re.match(r"^(\d+\. )?\w+\(.*\) -> ", l)] or lines[:1]
    found = {type_name(m.group(1)) for l in signatures if (m := re.search(r"\) -> (.+)$", l))}
    return found.pop() if len(found) == 1 else "Any"

def describe(cls):
    name = cls.__qualname__
    if name in classes:
        return name
    entry = classes[name] = {"bases": [b.__qualname__ for b in cls.__bases__ if b.__module__.startswith("tensorrt")],
                             "buffer": has_buffer(cls), "members": {}}
    for base in cls.__bases__:
        if base.__module__.startswith("tensorrt"):
            describe(base)
    for member, value in sorted(vars(cls).items()):
        if SKIP.match(member) or isinstance(value, types.WrapperDescriptorType):
            continue  # pybind11's own (a slot wrapper __init__ is "No constructor defined!")
        if isinstance(value, property):
            kind = f"property {returns(value.fget.__doc__ if value.fget else '')}" + (" settable" if value.fset else "")
        elif isinstance(value, staticmethod):
            kind = f"staticmethod {returns(value.__func__.__doc__)}"
        elif isinstance(value, type):
            kind = f"class {describe(value)}"
        elif callable(value) and not isinstance(value, cls):
            kind = f"method {returns(value.__doc__)}"
        else:
            owner = type(value)
            kind = f"attribute {describe(owner) if owner.__module__.startswith('tensorrt') else type_name(owner.__name__)}"
            if isinstance(value, cls) and hasattr(cls, "__int__"):
                kind += f" = {int(value)}"  # an enum member's value
        entry["members"][member] = kind
    return name

module = {}
for name, value in sorted(vars(trt).items()):
    if name.startswith("_") and name != "__version__":
        continue
    if isinstance(value, type) and value.__module__.startswith("tensorrt"):
        module[name] = f"class {describe(value)}"
    elif inspect.ismodule(value):
        continue
    elif callable(value):
        module[name] = f"function {returns(value.__doc__)}"
    else:
        module[name] = f"attribute {type_name(type(value).__name__)}"
print(json.dumps({"version": trt.__version__, "module": module, "classes": dict(sorted(classes.items()))}))
'''


def stand_in_libraries(folder: Path, major: str) -> None:
    """Empty ``lib<name>.so.<major>`` files defining :data:`ENTRY_POINTS` (each returns NULL)."""
    source = folder / "entry_points.c"
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in ENTRY_POINTS))
    for library in LIBRARIES:
        soname = f"lib{library}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(folder / soname), f"-Wl,-soname,{soname}", str(source)], check=True)


def facts(wheel: Path) -> dict:
    """The API facts of one bindings wheel."""
    with tempfile.TemporaryDirectory(prefix="trt-api-") as work:
        work_dir = Path(work)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(work_dir / "wheel")
        version = re.search(r"bindings-(\d+)\.", wheel.name)
        if version is None:
            raise SystemExit(f"{wheel.name}: not a tensorrt-cu12-bindings wheel")
        stand_in_libraries(work_dir, version.group(1))
        env = {**os.environ, "LD_LIBRARY_PATH": str(work_dir), "PYTHONPATH": str(work_dir / "wheel")}
        result = subprocess.run([sys.executable, "-c", DUMP], env=env, capture_output=True, text=True, check=True)
        return {"package": "tensorrt-cu12-bindings", "extracted_by": "scripts/tensorrt_api.py", **json.loads(result.stdout)}


def layout(found: dict) -> str:
    """JSON with one class per line: small, and a new release's changes read as a line diff."""
    head = {key: value for key, value in found.items() if key != "classes"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "classes": {']
    lines += [f"{json.dumps(name)}: {json.dumps(entry, sort_keys=True)}," for name, entry in sorted(found["classes"].items())]
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, nargs="+", help="tensorrt_cu12_bindings-*.whl files")
    parser.add_argument("--out", type=Path, default=Path("tests/api"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for wheel in args.wheels:
        found = facts(wheel)
        major_minor = ".".join(found["version"].split(".")[:2])
        path = args.out / f"tensorrt-{major_minor}.json"
        path.write_text(layout(found))
        print(f"{path}: {found['version']}, {len(found['classes'])} classes")


if __name__ == "__main__":
    main()
