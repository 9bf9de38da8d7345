"""Where records go: sinks behind one seam (:mod:`.base`), the JSON-lines files and an MQTT broker."""

from .base import Sink, SinkState
from .jsonl import FSYNC_MODES, DurabilityError, JsonlWriter, SinkError
from .mqtt import MqttSink, mqtt_sink
from .relay import RecordRelay
from .writer import RecordWriter, output_writer

__all__ = [
    "FSYNC_MODES", "DurabilityError", "JsonlWriter", "MqttSink", "RecordRelay", "RecordWriter", "Sink", "SinkError",
    "SinkState", "mqtt_sink", "output_writer",
]
