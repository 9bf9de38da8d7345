"""Frames of a clip and the model input made from them in NumPy, for comparing engines and
decoders without the DALI graph in between."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox
from dalistream.ingest.files import ClipReader
from dalistream.models.kinds import RETINAFACE_INPUT

INPUT = (960, 544)  # the default model.input


def clip_units(clip: Path, seconds: float) -> tuple[str, list]:
    """The clip's codec and its access units of the first ``seconds``."""
    reader = ClipReader(clip)
    try:
        units, _ = reader.read(seconds)
    finally:
        reader.close()
    return reader.codec, units


def clip_frames(clip: Path, count: int) -> list:
    """The clip's first ``count`` decoded frames (PyAV), in order."""
    reader = ClipReader(clip)
    decoder = PyAvDecoder(reader.codec)
    frames: list = []
    tag = 0
    try:
        while len(frames) < count:
            units, ended = reader.read(1.0)
            for unit in units:
                frames.extend(decoder.decode(unit.data, tag))
                tag += 1
            if ended:
                frames.extend(decoder.flush())
                break
    finally:
        reader.close()
    assert len(frames) >= count, f"{clip.name} gave {len(frames)} frames, wanted {count}"
    return frames[:count]


def model_input(frames: list) -> tuple[np.ndarray, list[Letterbox]]:
    """The model's NCHW float32 input for ``frames`` (scaled into their letterbox by swscale,
    normalized, padded with zeros = the mean colour), made in NumPy: the engines are compared,
    not the DALI graph."""
    width, height = INPUT
    mean = np.asarray(RETINAFACE_INPUT.mean, np.float32)
    std = np.asarray(RETINAFACE_INPUT.std, np.float32)
    tensor = np.zeros((len(frames), 3, height, width), np.float32)
    letterboxes = []
    for i, frame in enumerate(frames):
        letterbox = Letterbox.fit(frame.width, frame.height, width, height)
        image = PyAvDecoder.convert(frame, letterbox, RETINAFACE_INPUT.pixel_format).astype(np.float32)
        tensor[i, :, : letterbox.content_height, : letterbox.content_width] = ((image - mean) / std).transpose(2, 0, 1)
        letterboxes.append(letterbox)
    return tensor, letterboxes
