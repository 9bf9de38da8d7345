"""What a detector expects as input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputConvention:
    """How a model's input tensor is made from 8-bit pixels: ``(pixel - mean) / std`` per channel."""

    pixel_format: str
    """PyAV/swscale format the frame is converted to: ``"bgr24"`` or ``"rgb24"``."""
    mean: tuple[float, float, float]
    """Per-channel mean, in the channel order of ``pixel_format``."""
    std: tuple[float, float, float]
    """Per-channel divisor, in the channel order of ``pixel_format``."""
