"""DALI graph definitions (importable as ``dalistream.graphs``).

Only graph functions live here: they return symbolic DataNodes. Building, feeding and running
them is done by :mod:`dalistream.pipeline.preprocess`.
"""

from .letterbox import letterbox_normalize

__all__ = ["letterbox_normalize"]
