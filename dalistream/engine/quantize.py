"""INT8 by explicit quantization: one Q/DQ ONNX file that ONNX Runtime (CPU) and TensorRT (GPU) both run.

Calibration frames travel the live pipeline's path: each image is decoded by FFmpeg into an
``av.VideoFrame``, scaled and colour-converted by :meth:`PyAvDecoder.convert` into its letterbox,
and turned into the model's input tensor by the same :class:`Preprocessor` (DALI graph) the
service uses. So the activation ranges seen here are the ones the deployed model sees.

ONNX Runtime's static quantizer writes the file in the form TensorRT's explicit quantization
takes (:data:`QDQ_FORM`): signed INT8 activations with zero point 0, per-channel symmetric INT8
weights, and biases left in float (TensorRT refuses a ``DequantizeLinear`` of INT32 biases: "only
activation types allowed as input"). The model is upgraded to opset 13 first (per-channel
``QuantizeLinear`` needs the ``axis`` attribute of opset 13). The nodes in ``exclude`` stay float,
each with the activation that follows it (see :func:`with_activations`). The quantized model is
cached under a key made of the source model's hash, the calibration set's hash and the settings.

On x86 ONNX Runtime runs signed-by-signed convolutions slowly (slower than FP32), so its engine
loads the file through :func:`with_uint8_activations`: the same quantization grid written with
unsigned activations, which selects its fast unsigned-by-signed kernels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import structlog
from onnx import numpy_helper, version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from dalistream.config import RETINAFACE_INT8_EXCLUDE
from dalistream.decode.images import ImageError, load_image
from dalistream.models.convention import InputConvention
from dalistream.models.kinds import RETINAFACE_INPUT
from dalistream.engine.preprocess import Preprocessor

log = structlog.get_logger(__name__)

QDQ_OPSET = 13  # first opset whose QuantizeLinear/DequantizeLinear take a per-channel axis
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIBRATION_BATCH = 4  # frames per calibration inference
QDQ_FORM = "tensorrt-explicit: int8 symmetric activations, int8 per-channel symmetric weights, float bias"
"""The Q/DQ form of the INT8 file (part of its cache key)."""


# Element-wise activations that belong to the layer before them: keeping a layer in FP32 keeps
# these too, or the layer's output is still rounded to INT8 as the activation's input.
ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid"})


class QuantizationError(RuntimeError):
    """INT8 quantization could not be done (no calibration frames, unknown node names, ...)."""


@dataclass(frozen=True, slots=True)
class QuantizeSettings:
    """Everything besides the model and the frames that changes the quantized model."""

    input_size: tuple[int, int] = (960, 544)  # letterbox width, height used for calibration
    convention: InputConvention = RETINAFACE_INPUT  # pixel format and normalization of the model
    calibration: str = "entropy"  # "minmax", "entropy" or "percentile"
    exclude: tuple[str, ...] = RETINAFACE_INT8_EXCLUDE  # node names kept FP32 (with their activations)
    per_channel: bool = True
    max_frames: int = 200  # calibration frames used at most (evenly spread by name)

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {self.calibration!r}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_images(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files (JPEG/PNG) directly in ``folder``, sorted by name; at most ``limit``, evenly
    spread over that order (so over cameras and time for ``calibrate``'s ``<camera>-NNNN`` names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizationError(f"calibration folder not found: {folder} (model.calib_dir)")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is None or len(images) <= limit:
        return images
    if limit < 2:
        return images[:limit]
    step = (len(images) - 1) / (limit - 1)
    return [images[round(i * step)] for i in range(limit)]


def calibration_set_hash(images: Sequence[Path]) -> str:
    """Hash of the calibration frames: their names and contents, in order."""
    digest = hashlib.sha256()
    for path in images:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def cache_key(source_hash: str, calibration_hash: str, settings: QuantizeSettings) -> str:
    """Short stable key of one quantized model: source model, calibration frames and settings."""
    plain = {
        "source": source_hash,
        "calibration_set": calibration_hash,
        "settings": asdict(settings),
        "opset": QDQ_OPSET,
        "form": QDQ_FORM,
        "onnxruntime": onnxruntime.__version__,  # the quantizer's choices change between releases
    }
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def load_frame(path: Path, input_size: tuple[int, int], pixel_format: str = "bgr24") -> np.ndarray:
    """One calibration image as the live pipeline would hand it to the preprocessor."""
    try:
        return load_image(path, input_size, pixel_format)[0]
    except ImageError as exc:
        raise QuantizationError(str(exc)) from exc


class ImageTensors:
    """Calibration images through the live path (FFmpeg decode, letterbox, the DALI graph) into
    model inputs of up to ``batch`` images that the caller owns."""

    def __init__(self, input_size: tuple[int, int], convention: InputConvention, batch: int) -> None:
        self._input_size = input_size
        self._pixel_format = convention.pixel_format
        self._preprocess = Preprocessor(*input_size, batch, mean=convention.mean, std=convention.std)

    def __call__(self, paths: Sequence[Path]) -> np.ndarray:
        frames = [load_frame(path, self._input_size, self._pixel_format) for path in paths]
        # A copy: the preprocessor reuses its output buffer on the next call.
        return np.array(self._preprocess(frames), copy=True)


class FrameCalibrationReader(CalibrationDataReader):
    """Feeds ONNX Runtime's calibrator with preprocessed frame batches, one input dict at a time.

    Batches hold ``batch`` frames (the last one may hold fewer). :meth:`set_range` selects
    batches ``[start, end)``, so the calibrator can reduce activations range by range instead
    of holding those of the whole set (gigabytes at 960x544).
    """

    def __init__(
        self,
        images: Sequence[Path],
        input_name: str,
        input_size: tuple[int, int],
        convention: InputConvention = RETINAFACE_INPUT,
        batch: int = CALIBRATION_BATCH,
    ) -> None:
        if not images:
            raise QuantizationError("no calibration images")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._images = list(images)
        self._input_name = input_name
        self._batch = batch
        self._tensors = ImageTensors(input_size, convention, batch)
        self._batches = self._generate(0, len(self))

    def __len__(self) -> int:
        return -(-len(self._images) // self._batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._batches, None)
        return None if tensor is None else {self._input_name: tensor}

    def rewind(self) -> None:
        self._batches = self._generate(0, len(self))

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches = self._generate(start_index, end_index)

    def _generate(self, start: int, end: int) -> Iterator[np.ndarray]:
        for index in range(start, min(end, len(self))):
            yield self._tensors(self._images[index * self._batch : (index + 1) * self._batch])


def with_activations(graph: onnx.GraphProto, names: Sequence[str]) -> list[str]:
    """``names`` plus each named node's activation, when that activation is its output's only consumer.

    In QDQ form ONNX Runtime rounds every tensor entering a quantized operator. Excluding
    only a convolution leaves its pre-activation output rounded to INT8 as the input of the
    quantized LeakyReLU that follows, and that tensor's range (a long negative tail) makes
    the rounding coarse: measured on faces-dev, excluding RetinaFace's first stage costs
    1.5-2 AP points with convolutions alone and nothing with their activations.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    by_name = {node.name: node for node in graph.node}
    expanded = list(names)
    for name in names:
        node = by_name.get(name)
        if node is None or len(node.output) != 1:
            continue
        following = consumers.get(node.output[0], [])
        if len(following) == 1 and following[0].op_type in ACTIVATIONS and following[0].name not in expanded:
            expanded.append(following[0].name)
    return expanded


def upgrade_opset(model: onnx.ModelProto, opset: int = QDQ_OPSET) -> onnx.ModelProto:
    """``model`` converted to at least ``opset`` of the default domain (unchanged if already there)."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    return version_converter.convert_version(model, opset)


def quantize_int8(
    source: str | os.PathLike[str],
    images: Sequence[Path],
    output: str | os.PathLike[str],
    settings: QuantizeSettings,
    ranges_cache: Path | None = None,
) -> Path:
    """Write the static-QDQ INT8 version of ``source`` to ``output``, calibrated on ``images``.

    With ``ranges_cache`` the calibrated activation ranges are read from that JSON file when it
    exists (no calibration run) and written to it otherwise; they depend on the model, frames,
    method, input size and convention, not on which nodes are excluded.
    """
    model = upgrade_opset(onnx.load(str(source)))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dalistream-quant-") as work:
        upgraded = Path(work) / "opset13.onnx"
        onnx.save(model, str(upgraded))
        prepared = Path(work) / "prepared.onnx"
        # Shape inference + constant folding: folds the export's Identity nodes on conv biases
        # into initializers, so those biases quantize too. Node names are kept.
        quant_pre_process(upgraded, prepared, skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        unknown = [name for name in settings.exclude if name not in {node.name for node in graph.node}]
        if unknown:
            raise QuantizationError(f"model.int8_exclude: nodes not in {source}: {', '.join(unknown)}")
        (model_input,) = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        excluded = with_activations(graph, settings.exclude)
        partial = output.with_name(output.name + ".partial")
        quantize_static(
            prepared,
            partial,
            FrameCalibrationReader(images, model_input, settings.input_size, settings.convention),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CALIBRATION_METHODS[settings.calibration],
            extra_options={
                "ActivationSymmetric": True,  # zero point 0: the only INT8 form TensorRT takes
                "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT dequantizes only activation types, not INT32 biases
                "CalibStridedMinMax": 1,  # reduce batch by batch (any method)
            },
            calibration_cache_path=ranges_cache,
        )
        partial.replace(output)
    return output


def int8_model_path(
    source: str | os.PathLike[str],
    calibration_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    settings: QuantizeSettings,
) -> Path:
    """Where the INT8 model for these inputs is cached (whether or not it was made yet)."""
    _, source_hash, frames_hash = _inputs(source, calibration_dir, settings)
    return _cached(source, cache_dir, "int8", cache_key(source_hash, frames_hash, settings), ".onnx")


def cached_int8_model(
    source: str | os.PathLike[str],
    calibration_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    settings: QuantizeSettings,
) -> Path:
    """The INT8 model for these inputs from ``cache_dir``, quantizing it first when absent."""
    images, source_hash, frames_hash = _inputs(source, calibration_dir, settings)
    path = _cached(source, cache_dir, "int8", cache_key(source_hash, frames_hash, settings), ".onnx")
    if not path.is_file():
        log.info("quantizing to INT8", model=str(source), frames=len(images), method=settings.calibration, output=str(path))
        ranges_settings = dataclasses.replace(settings, exclude=(), per_channel=True)
        ranges = _cached(source, cache_dir, "ranges", cache_key(source_hash, frames_hash, ranges_settings), ".json")
        quantize_int8(source, images, path, settings, ranges)
    return path


def _inputs(
    source: str | os.PathLike[str], calibration_dir: str | os.PathLike[str], settings: QuantizeSettings
) -> tuple[list[Path], str, str]:
    """The calibration frames, and the hashes of the source model and of those frames (read once)."""
    images = _calibration_frames(calibration_dir, settings)
    return images, file_sha256(source), calibration_set_hash(images)


def _cached(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str], kind: str, key: str, suffix: str) -> Path:
    return Path(cache_dir) / f"{Path(source).stem}-{kind}-{key}{suffix}"


def _calibration_frames(calibration_dir: str | os.PathLike[str], settings: QuantizeSettings) -> list[Path]:
    images = calibration_images(calibration_dir, settings.max_frames)
    if not images:
        raise QuantizationError(
            f"no calibration frames (*.jpg, *.png) in {calibration_dir} (model.calib_dir): "
            "run `python -m dalistream calibrate`"
        )
    return images


def with_uint8_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (changed in place) with each INT8 activation ``QuantizeLinear``/``DequantizeLinear``
    written as UINT8 with its zero point moved by 128: the same values (``round(x / scale)`` in
    [-128, 127] becomes that plus 128 in [0, 255]), so the same results, but ONNX Runtime's x86
    convolutions then take their unsigned-activation kernels (measured on this model at 960x544,
    batch 4: 82 ms signed, 60 ms unsigned, 75 ms FP32). Weights stay signed."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    moved: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            continue  # a quantized weight
        zero_point = initializers.get(node.input[2])
        if zero_point is None or zero_point.data_type != onnx.TensorProto.INT8:
            continue
        if zero_point.name not in moved:
            shifted = numpy_helper.to_array(zero_point).astype(np.int16) + 128
            unsigned = numpy_helper.from_array(shifted.astype(np.uint8), f"{zero_point.name}_uint8")
            graph.initializer.append(unsigned)
            moved[zero_point.name] = unsigned.name
        node.input[2] = moved[zero_point.name]
    unused = set(moved) - {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model
