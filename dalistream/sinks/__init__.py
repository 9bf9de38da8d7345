"""Where records go."""

from .jsonl import FSYNC_MODES, DurabilityError, JsonlWriter, SinkError
from .writer import RecordWriter, output_writer

__all__ = ["FSYNC_MODES", "DurabilityError", "JsonlWriter", "RecordWriter", "SinkError", "output_writer"]
