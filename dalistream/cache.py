"""dalistream's cache directory: measured costs (``bench``), and the demo's model and clip when
installed from a wheel."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DALISTREAM_CACHE"


def cache_dir() -> Path:
    """``$DALISTREAM_CACHE``, else ``$XDG_CACHE_HOME/dalistream`` (when absolute, as the XDG
    spec says), else ``~/.cache/dalistream``."""
    if cache := os.environ.get(CACHE_ENV):
        return Path(cache)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "dalistream"
