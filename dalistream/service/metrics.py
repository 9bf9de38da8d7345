"""``/metrics``: the runtime's own counters, read at scrape time, in the Prometheus text format.

The counters live where they are counted (the runtime, the ingest, the writer); this collector
only reads them when Prometheus asks, so nothing is counted twice. Histograms (latency, batch
sizes, stage costs) are filled as the pipeline runs (:class:`dalistream.metrics.Telemetry`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dalistream.device import device_memory
from dalistream.pipeline.runtime import LOSS_KEYS, Runtime
from dalistream.pipeline.status import STREAMING
from dalistream.sinks import SinkState

# Per camera: counter name → (the runtime's count, help).
CAMERA_COUNTERS = {
    "dalistream_camera_access_units": ("access_units", "Access units (frames) received."),
    "dalistream_camera_frames_decoded": ("frames_decoded", "Frames decoded (every frame, analysed or not)."),
    "dalistream_camera_frames_analysed": ("frames_analysed", "Frames through the detector."),
    "dalistream_camera_faces": ("faces", "Faces found in analysed frames."),
    "dalistream_camera_reconnects": ("reconnects", "Reconnect attempts after a session ended."),
    "dalistream_camera_internal_errors": ("internal_errors", "Bugs of ours on this camera's packet path (each restarted its session)."),
}
LOSS_HELP = {
    "packets_lost": "RTP packets missing from the sequence.",
    "frames_lost": "Access units lost before decoding (broken by packet loss, or dropped while the decoder was behind).",
    "malformed_packets": "RTP packets that could not be parsed.",
    "decoder_backlog": "Times the decoder queue was full (the rest of that GOP was dropped).",
    "decode_errors": "Access units the decoder rejected.",
    "corrupt_frames": "Frames decoded with errors concealed.",
}


class RuntimeCollector(Collector):
    """Reads ``runtime``'s per-camera and output counters at each scrape."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        reports = [runtime.report(camera.id) for camera in runtime.cameras()]
        packets = CounterMetricFamily("dalistream_camera_packets", "RTP packets received.", labels=["camera"])
        counters = {name: CounterMetricFamily(name, text, labels=["camera"]) for name, (_, text) in CAMERA_COUNTERS.items()}
        losses = {key: CounterMetricFamily(f"dalistream_camera_{key}", LOSS_HELP[key], labels=["camera"]) for key in LOSS_KEYS}
        dropped = CounterMetricFamily(
            "dalistream_camera_frames_dropped", "Sampled frames dropped before analysis, by reason.", labels=["camera", "reason"]
        )
        connected = GaugeMetricFamily("dalistream_camera_connected", "1 while the camera streams.", labels=["camera"])
        age = GaugeMetricFamily(
            "dalistream_camera_last_frame_age_seconds", "Time since the camera's last access unit arrived.", labels=["camera"]
        )
        units = GaugeMetricFamily("dalistream_camera_queued_access_units", "Access units waiting for the decoder.", labels=["camera"])
        frames = GaugeMetricFamily("dalistream_camera_queued_frames", "Sampled frames waiting for a batch.", labels=["camera"])
        for report in reports:
            camera = [report.config.id]
            packets.add_metric(camera, report.packets)
            for name, (key, _) in CAMERA_COUNTERS.items():
                counters[name].add_metric(camera, report.counts.get(key, 0))
            for key, family in losses.items():
                family.add_metric(camera, report.losses[key])
            for reason, count in report.dropped.items():
                dropped.add_metric([*camera, reason], count)
            connected.add_metric(camera, 1.0 if report.status.state == STREAMING else 0.0)
            if report.status.last_frame_age_s is not None:
                age.add_metric(camera, report.status.last_frame_age_s)
            units.add_metric(camera, report.queued_units)
            frames.add_metric(camera, report.queued_frames)
        yield from (packets, *counters.values(), *losses.values(), dropped, connected, age, units, frames)
        yield GaugeMetricFamily("dalistream_cameras", "Cameras configured.", value=len(reports))
        yield GaugeMetricFamily("dalistream_ready", "1 once the detector is loaded and the cameras started.", value=float(runtime.ready))
        yield GaugeMetricFamily("dalistream_batch_queued_frames", "Sampled frames, all cameras, waiting for a batch.", value=runtime.batch_queued)
        yield CounterMetricFamily("dalistream_output_records_written", "Records written to the output.", value=runtime.records_written)
        yield CounterMetricFamily("dalistream_output_records_lost", "Records that never reached the output.", value=runtime.records_lost)
        yield GaugeMetricFamily("dalistream_output_records_queued", "Records waiting for the disk.", value=runtime.output_queued)
        yield GaugeMetricFamily("dalistream_output_ok", "0 while records (or face crops) are not reaching the output.",
                                value=float(runtime.output_problem is None))
        yield from mqtt_metrics(runtime.sink_states())
        for name, mib in device_memory(runtime.plan.device).items():  # the GPU's; nothing on the CPU
            yield GaugeMetricFamily(f"dalistream_{name.removesuffix('_mib')}_bytes", "GPU memory (all its processes).", value=mib << 20)
        if busy := runtime.stream_busy_ms():  # the GPU's streams; nothing on the CPU
            streams = CounterMetricFamily("dalistream_stream_busy_seconds", "Device time each stage's CUDA streams ran.", labels=["stage"])
            for stage, ms in busy.items():
                streams.add_metric([stage], ms / 1e3)
            yield streams


def mqtt_metrics(states: list[SinkState]) -> Iterator[Metric]:
    """The MQTT sink's counters, when there is one."""
    for state in states:
        if state.name == "mqtt":
            yield CounterMetricFamily("dalistream_mqtt_messages_published", "Messages the broker acknowledged (QoS 1) or was sent (QoS 0).", value=state.sent)
            yield CounterMetricFamily("dalistream_mqtt_messages_dropped", "Messages dropped (buffer full, crop unreadable, left at stop).", value=state.dropped)
            yield GaugeMetricFamily("dalistream_mqtt_messages_queued", "Messages waiting for the broker or its acknowledgement.", value=state.queued)
            yield GaugeMetricFamily("dalistream_mqtt_connected", "1 while connected to the broker.", value=float(state.up))


def metrics_registry(runtime: Runtime) -> CollectorRegistry:
    """What ``/metrics`` serves for ``runtime``: its histograms, its counters and the process's
    own (CPU seconds, resident memory, open file descriptors)."""
    registry = runtime.telemetry.registry
    registry.register(RuntimeCollector(runtime))
    ProcessCollector(namespace="dalistream", registry=registry)
    return registry
