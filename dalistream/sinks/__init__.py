"""Where records go."""

from .jsonl import FSYNC_MODES, DurabilityError, JsonlWriter, SinkError
from .relay import RecordRelay
from .writer import RecordWriter, output_writer

__all__ = ["FSYNC_MODES", "DurabilityError", "JsonlWriter", "RecordRelay", "RecordWriter", "SinkError", "output_writer"]
