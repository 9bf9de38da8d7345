"""Still images (evaluation sets, calibration frames) through the live frame conversion."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox


class ImageError(ValueError):
    """An image file cannot be decoded."""


def load_image(path: Path, input_size: tuple[int, int], pixel_format: str = "bgr24") -> tuple[np.ndarray, Letterbox]:
    """Decode ``path`` with FFmpeg and convert it exactly as a live decoded frame is converted:
    swscale to ``pixel_format`` at the letterbox content size for ``input_size``."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration) as exc:
        raise ImageError(f"cannot decode image {path}: {exc}") from exc
    letterbox = Letterbox.fit(frame.width, frame.height, *input_size)
    return PyAvDecoder.convert(frame, letterbox, pixel_format), letterbox
