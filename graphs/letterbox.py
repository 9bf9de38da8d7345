"""Letterbox pad + normalize: scaled frames in, the model's NCHW float tensor out."""

from __future__ import annotations

from collections.abc import Sequence

from nvidia.dali import fn, pipeline_def, types

FRAMES = "frames"
"""Name of the external source fed with one HWC uint8 frame per sample."""


@pipeline_def
def letterbox_normalize(
    device: str,
    input_width: int,
    input_height: int,
    mean: Sequence[float],
    std: Sequence[float],
):
    """Pads each already-scaled frame to ``input_height x input_width`` at the top-left
    corner, subtracts ``mean`` / divides by ``std`` per channel, and lays it out as CHW float32.

    Padding is zero *after* normalization, i.e. the mean colour, which is what the detector
    saw around images during training. ``device`` is "cpu" or "gpu"; frames are fed on the
    host either way.
    """
    frames = fn.external_source(name=FRAMES, device="cpu", layout="HWC", dtype=types.UINT8, no_copy=True)
    if device == "gpu":
        frames = frames.gpu()
    return fn.crop_mirror_normalize(
        frames,
        device=device,
        crop=(input_height, input_width),
        crop_pos_x=0.0,
        crop_pos_y=0.0,
        out_of_bounds_policy="pad",
        fill_values=0.0,
        mean=list(mean),
        std=list(std),
        dtype=types.FLOAT,
        output_layout="CHW",
    )
