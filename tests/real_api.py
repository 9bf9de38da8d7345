"""The published API of GPU packages that cannot run here, read from their real wheels, for the
conformance tests of the stand-ins in ``fake_gpu``.

PyNvVideoCodec's bindings need the NVIDIA driver (``libcuda.so.1``) only to be loaded, not to be
introspected: :func:`pynvvideocodec_api` extracts the wheel, builds a library of the driver
functions the bindings name (each returning an error; none is called while the module only
describes itself), loads the real ``PyNvVideoCodec_1xx`` module against it in a subprocess (so
nothing of it reaches the test process, where CuPy and DALI look for the real driver), and
returns what the module says of itself: its names, classes, enums, pybind11 signatures and
exception classes, and which of the messages the stand-in raises the module contains.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

_DESCRIBE = r"""
import ctypes, importlib.util, json, sys
from pathlib import Path

module_path, stub, runtime, messages = Path(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ctypes.CDLL(stub, mode=ctypes.RTLD_GLOBAL)
ctypes.CDLL(runtime, mode=ctypes.RTLD_GLOBAL)
spec = importlib.util.spec_from_file_location("_PyNvVideoCodec", module_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

def doc(obj):
    return (getattr(obj, "__doc__", None) or "").strip()

names = sorted(name for name in dir(module) if not name.startswith("_"))
classes, enums, functions = {}, {}, {}
for name in names:
    obj = getattr(module, name)
    if isinstance(obj, type) and hasattr(obj, "__members__"):
        enums[name] = sorted(obj.__members__)
    elif isinstance(obj, type):
        classes[name] = {
            "attributes": sorted(dir(obj)),
            "bases": [base.__name__ for base in obj.__mro__[1:]],
            "docs": {attr: doc(getattr(obj, attr, None)) for attr in dir(obj) if not attr.startswith("__")},
        }
    elif callable(obj):
        functions[name] = doc(obj)
binary = module_path.read_bytes()
found = {message: message.encode() in binary for message in messages}
print(json.dumps({"names": names, "classes": classes, "enums": enums, "functions": functions, "messages": found}))
"""


def pynvvideocodec_api(wheel: Path, work: Path, messages: list[str]) -> dict:
    """What the real bindings in ``wheel`` say of themselves (see the module docstring)."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(work)
    module = max(work.glob("PyNvVideoCodec/PyNvVideoCodec_1*.so"))  # the newest NVENC API the wheel has
    (runtime,) = [path for path in work.glob("pynvvideocodec*/libcudart*.so*") if path.is_file()]
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(module)], capture_output=True, text=True, check=True).stdout
    symbols = sorted({line.split()[-1].split("@")[0] for line in undefined.splitlines() if line.split()[-1].startswith("cu")
                      and line.split()[-1][2:3].isupper()})
    source = work / "libcuda_stub.c"
    source.write_text("".join(f"int {symbol}(void) {{ return 999; }}\n" for symbol in symbols))  # CUDA_ERROR_UNKNOWN
    stub = work / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(stub), str(source)], check=True)
    described = subprocess.run(
        [sys.executable, "-c", _DESCRIBE, str(module), str(stub), str(runtime), json.dumps(messages)],
        capture_output=True, text=True, check=True, env={"LD_LIBRARY_PATH": str(work), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(described.stdout)


def pybind_overloads(doc: str, name: str) -> list[list[str]]:
    """Parameter names of each overload of ``name`` in a pybind11 docstring."""
    overloads = []
    for line in doc.splitlines():
        line = line.strip()
        head = line.split(". ", 1)[1] if line[:1].isdigit() and ". " in line else line
        if head.startswith(f"{name}(") and "->" in head:
            inside = head[len(name) + 1 : head.rindex(") ->")]
            overloads.append([part.split(":")[0].strip() for part in _split_top_level(inside) if ":" in part])
    return overloads


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside brackets (defaults like ``<cudaVideoCodec.H264: 4>``)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char in "([<{"
        depth -= char in ")]>}"
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]
