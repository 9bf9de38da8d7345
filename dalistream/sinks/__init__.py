"""Where records go."""

from .jsonl import JsonlWriter, SinkError

__all__ = ["JsonlWriter", "SinkError"]
