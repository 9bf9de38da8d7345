"""Decoding access units into frames (CPU: PyAV; GPU paths come later)."""

from .pyav import CpuDecoder, DecodeError

__all__ = ["CpuDecoder", "DecodeError"]
