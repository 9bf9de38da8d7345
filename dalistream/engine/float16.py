"""FP16 ONNX for TensorRT's strongly typed build, made by onnxconverter-common and cached by content.

TensorRT 11 has no FP16 builder flag: a network runs in FP16 where its ONNX file says FP16. The
file is the FP32 model converted by onnxconverter-common's ``convert_float_to_float16`` (weights
and activations FP16; the operators on its block list, such as ``Resize``, stay FP32 behind
casts), with ``keep_io_types`` so the input and outputs stay FP32: the engine takes the same
batch and returns the same dtypes at every precision. The converted file is cached under a key
of the source model's SHA-256 and the converter's version and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import onnx
import structlog

from dalistream.engine.quantize import file_sha256

log = structlog.get_logger(__name__)

CONVERTER = "onnxconverter-common"
SETTINGS = {"keep_io_types": True}


class Float16Error(RuntimeError):
    """The FP16 model cannot be made (the converter is not installed)."""


def fp16_model_path(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Where the FP16 version of ``source`` is cached (whether or not it was made yet)."""
    plain = {"source": file_sha256(source), "converter": _converter_version(), "settings": SETTINGS}
    key = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(source).stem}-fp16-{key}.onnx"


def cached_fp16_model(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """The FP16 version of ``source`` from ``cache_dir``, converted first when absent (a second)."""
    path = fp16_model_path(source, cache_dir)
    if path.is_file():
        return path
    from onnxconverter_common import float16

    log.info("converting to FP16", model=str(source), output=str(path))
    converted = float16.convert_float_to_float16(onnx.load(str(source)), **SETTINGS)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    onnx.save(converted, str(partial))
    partial.replace(path)
    return path


def _converter_version() -> str:
    try:
        return version(CONVERTER)
    except PackageNotFoundError as exc:
        raise Float16Error(f"FP16 models are made by {CONVERTER}: pip install {CONVERTER}") from exc
