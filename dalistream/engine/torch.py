"""PyTorch inference: the ONNX model converted once (onnx2torch) and run batched, FP16 or FP32.

For GPU users who have PyTorch but not TensorRT. The source model first goes through ONNX
Runtime's basic graph optimizations (constant folding, identity elimination: the exporter's
``Identity`` nodes over shared weights are what onnx2torch cannot take) into a cached copy,
which onnx2torch turns into a ``torch.nn.Module``.

Inputs may be NumPy arrays or any DLPack producer (CuPy, DALI's GPU output, torch); a GPU
input is taken without a copy, on the producer's stream ordering (DLPack's ``stream``
handshake). Outputs are CuPy arrays on the GPU (so the face decoder runs there) or NumPy
arrays on the CPU, in float32, owned by the caller.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from dalistream.engine.quantize import file_sha256

TORCH_PRECISIONS = ("fp32", "fp16")


def torch_ready_onnx(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """``source`` after ONNX Runtime's basic optimizations, cached by its hash in ``cache_dir``."""
    import onnxruntime as ort

    path = Path(cache_dir) / f"{Path(source).stem}-basic-{file_sha256(source)[:16]}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(partial)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    partial.replace(path)
    return path


class TorchEngine:
    """One converted model on one torch device; ``__call__`` maps an NCHW batch to named outputs.

    ``precision`` is ``"fp16"`` (GPU only: weights in half precision, run under CUDA autocast,
    which keeps the precision-sensitive ops such as softmax in FP32) or ``"fp32"``. Work is
    queued on the engine's own CUDA stream.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str],
        *,
        device: str = "cuda",
        precision: str = "fp16",
    ) -> None:
        import onnx
        import onnx2torch
        import torch

        if precision not in TORCH_PRECISIONS:
            raise ValueError(f"the torch engine runs {' or '.join(TORCH_PRECISIONS)}, not {precision!r}")
        if not Path(model).is_file():
            raise FileNotFoundError(f"model not found: {model}")
        self._torch = torch
        self.device = torch.device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device (half-precision convolutions on the CPU are slow or missing)")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        graph = onnx.load(str(torch_ready_onnx(model, cache_dir)))
        self.output_names = [output.name for output in graph.graph.output]
        self._module = onnx2torch.convert(graph).eval().to(self.device, self.dtype)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __call__(self, batch: Any) -> dict[str, Any]:
        torch = self._torch
        autocast = torch.autocast(self.device.type, torch.float16, enabled=self.dtype == torch.float16)
        with torch.inference_mode(), _on_stream(torch, self.stream), autocast:
            tensor = torch.from_dlpack(batch) if not isinstance(batch, np.ndarray) else torch.from_numpy(batch)
            outputs = self._module(tensor.to(self.device, self.dtype, non_blocking=True))
            if isinstance(outputs, torch.Tensor):
                outputs = (outputs,)
            return {name: _export(torch, output.float()) for name, output in zip(self.output_names, outputs, strict=True)}


def _on_stream(torch: Any, stream: Any) -> Any:
    return torch.cuda.stream(stream) if stream is not None else nullcontext()


def _export(torch: Any, tensor: Any) -> Any:
    """A CuPy array sharing a CUDA tensor's memory (ordered after this stream's work), or NumPy."""
    if tensor.device.type == "cuda":
        import cupy

        return cupy.from_dlpack(tensor)
    return tensor.numpy()
