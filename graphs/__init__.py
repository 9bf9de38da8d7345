"""DALI graph definitions (importable as ``dalistream.graphs``).

Only graph functions live here: they return symbolic DataNodes. Building, feeding and running
them is done by :mod:`dalistream.engine.preprocess` and :mod:`dalistream.decode.gop`.
"""

from .gop import gop_decode
from .letterbox import letterbox_normalize

__all__ = ["gop_decode", "letterbox_normalize"]
