"""Host or device arrays through one code path: NumPy for host arrays, CuPy for GPU ones.

The face decoders and NMS are written against the array module of their inputs, so the same
code thresholds and decodes on the host (ONNX Runtime's outputs) and on the GPU (an engine's
device outputs), and only what is kept crosses to the host. CuPy is imported only when a CuPy
array is seen.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def array_module(array: Any) -> ModuleType:
    """``cupy`` for a CuPy array, ``numpy`` for anything else."""
    if type(array).__module__.split(".", 1)[0] == "cupy":
        import cupy

        return cupy
    return np


def to_host(array: Any) -> np.ndarray:
    """``array`` as a NumPy array (a device-to-host copy for a CuPy array)."""
    return array.get() if array_module(array) is not np else np.asarray(array)


class HostConstant:
    """A constant made on the host (priors, anchors), copied to the GPU once when first needed there."""

    def __init__(self, array: np.ndarray) -> None:
        self.host = array
        self._device: Any = None

    def on(self, xp: ModuleType) -> Any:
        """The constant as an array of ``xp``."""
        if xp is np:
            return self.host
        if self._device is None:
            self._device = xp.asarray(self.host)
        return self._device
