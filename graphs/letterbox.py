"""Letterbox scale + pad + normalize: frames in, the model's NCHW float tensor out, on either device."""

from __future__ import annotations

from collections.abc import Sequence

from nvidia.dali import fn, pipeline_def, types

FRAMES = "frames"
"""Name of the external source fed with the batch of HWC uint8 frames."""
WIDTHS, HEIGHTS = "widths", "heights"
"""With ``scale``: each frame's letterbox content width and height (float32 scalars per sample)."""
EXTENTS = "extents"
"""With ``scale``: each frame's own height and width (float32 pair per sample) within its
sample of the fed batch, which may be padded beyond it."""


@pipeline_def
def letterbox_normalize(
    device: str,
    input_width: int,
    input_height: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: bool,
):
    """Pads each frame to ``input_height x input_width`` at the top-left corner, subtracts
    ``mean`` / divides by ``std`` per channel, and lays it out as CHW float32.

    Frames are fed on ``device`` ("cpu": host arrays; "gpu": device arrays), in the model's
    channel order. Without ``scale`` they arrive already scaled to their letterbox content size
    (the CPU decoder's swscale does it with the colour conversion), as a list of arrays; with
    ``scale`` (the GPU path) they arrive at their source size as one dense ``(N, H, W, 3)``
    batch, each frame at the top-left of its sample (``EXTENTS`` says how far it reaches),
    with their content sizes fed to ``WIDTHS`` and ``HEIGHTS``, and are scaled here (bilinear,
    antialiased, reading only each frame's own region), the whole batch at once.

    Padding is zero *after* normalization, i.e. the mean colour, which is what the detector
    saw around images during training.
    """
    frames = fn.external_source(name=FRAMES, device=device, layout="HWC", dtype=types.DALIDataType.UINT8, no_copy=True)
    if scale:
        widths = fn.external_source(name=WIDTHS, device="cpu", dtype=types.DALIDataType.FLOAT, ndim=0)
        heights = fn.external_source(name=HEIGHTS, device="cpu", dtype=types.DALIDataType.FLOAT, ndim=0)
        extents = fn.external_source(name=EXTENTS, device="cpu", dtype=types.DALIDataType.FLOAT, ndim=1)
        frames = fn.resize(  # type: ignore[assignment]  # one input gives one output, not the stub's union
            frames,
            device=device,
            resize_x=widths,
            resize_y=heights,
            roi_start=[0.0, 0.0],
            roi_end=extents,
            roi_relative=False,
            interp_type=types.DALIInterpType.INTERP_LINEAR,
            antialias=True,
        )
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
        dtype=types.DALIDataType.FLOAT,
        output_layout="CHW",
    )
