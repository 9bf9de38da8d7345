"""Decoding access units into frames (CPU: PyAV; GPU paths come later)."""

from .cpu import CpuDecoder, DecodeError

__all__ = ["CpuDecoder", "DecodeError"]
