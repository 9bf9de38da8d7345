"""Letterbox geometry: where a source frame lands inside the model input, and back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Letterbox:
    """A source frame scaled (aspect kept) into the top-left corner of the model input.

    The rest of the input is padding. Detections found in input pixels map back to
    source pixels by dividing by ``scale_x`` / ``scale_y``.
    """

    source_width: int
    source_height: int
    content_width: int
    content_height: int
    input_width: int
    input_height: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> Letterbox:
        """Largest aspect-preserving fit of the source inside the input (at least 1x1 px)."""
        if min(source_width, source_height, input_width, input_height) <= 0:
            raise ValueError(
                f"letterbox sizes must be positive: source {source_width}x{source_height}, "
                f"input {input_width}x{input_height}"
            )
        scale = min(input_width / source_width, input_height / source_height)
        content_width = min(input_width, max(1, round(source_width * scale)))
        content_height = min(input_height, max(1, round(source_height * scale)))
        return cls(source_width, source_height, content_width, content_height, input_width, input_height)

    @property
    def scale_x(self) -> float:
        return self.content_width / self.source_width

    @property
    def scale_y(self) -> float:
        return self.content_height / self.source_height
