"""ONNX Runtime inference on the CPU."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxRuntimeEngine:
    """One ONNX Runtime session; ``__call__`` maps an NCHW batch to the model's named outputs.

    ``model`` is an ONNX file, or a serialized model (bytes) that was changed on loading."""

    def __init__(self, model: str | PathLike[str] | bytes, *, intra_op_threads: int = 0, inter_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads spin by default, burning cores that the decoders need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FileNotFoundError(f"model not found: {model}")
        self._session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                             providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            source = "serialized model" if isinstance(model, bytes) else model
            raise ValueError(f"{source}: expected one input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, outputs))
