"""Site configuration (`site.toml`): typed, validated once at start-up.

Every field has a docstring (the ``doc`` metadata) and a type; unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the key, e.g. ``camera[1].url``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import unquote, urlsplit


DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}  # RFC 2326; RFC 7826 §11.1 (RTSP over TLS)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    device: str = _doc('"auto" (the GPU when the machine and this build can use one, else the CPU), "cpu" or "gpu".', default="auto")
    detect_fps: float = _doc("Frames analysed per second per camera, chosen by timestamp.", default=5.0)
    gpu_decode: str = _doc('On the GPU: "nvdec" (a decoder per camera, each frame out as its access unit arrives) or "dali-gop" (closed GOPs decoded whole by DALI: throughput, at up to one GOP of latency).', default="nvdec")
    max_batch: int = _doc("Most frames (across cameras) in one inference batch (0 = by device: 1 on the CPU, where batching buys ONNX Runtime no speed and costs latency; 8 on the GPU).", default=0)
    infer_workers: int = _doc("Inference batches analysed at once (0 = by device: on the CPU one per core, each by its own detector; on the GPU 3, one in each stage of one detector whose stages are pipelined).", default=0)
    max_wait_ms: float = _doc("Longest a frame waits for its batch to fill.", default=20.0)
    queue_frames: int = _doc("Sampled frames held per camera before the oldest is dropped.", default=2)
    decode_threads: int = _doc("Worker threads decoding all cameras (0 = one per CPU core).", default=0)
    skip_loop_filter: bool = _doc("CPU decoding: skip the H.264/H.265 loop filter (deblocking) on every frame but key frames: about a fifth less decode CPU, no change in accuracy measured (README, Performance); false keeps the pictures (and face crops) exactly as encoded.", default=True)
    adaptive: bool = _doc("Analyse a camera whose frames showed no face for `adaptive_idle_s` at `adaptive_idle_fps`, until a face appears (then at `detect_fps` again at once).", default=False)
    adaptive_idle_s: float = _doc("With `adaptive`: seconds without a face before a camera's rate drops.", default=10.0)
    adaptive_idle_fps: float = _doc("With `adaptive`: frames analysed per second of a camera with no face.", default=1.0)
    admission: str = _doc('A camera added while running that the capacity plan says does not fit: "refuse" it (with the reason) or "warn" and add it.', default="refuse")

    def validate(self, key: str) -> None:
        _choice(f"{key}.device", self.device, ("auto", "cpu", "gpu"))
        _choice(f"{key}.gpu_decode", self.gpu_decode, ("nvdec", "dali-gop"))
        _positive(f"{key}.detect_fps", self.detect_fps)
        _at_least(f"{key}.max_batch", self.max_batch, 0)
        _at_least(f"{key}.infer_workers", self.infer_workers, 0)
        _at_least(f"{key}.max_wait_ms", self.max_wait_ms, 0)
        _positive(f"{key}.queue_frames", self.queue_frames)
        _at_least(f"{key}.decode_threads", self.decode_threads, 0)
        _positive(f"{key}.adaptive_idle_s", self.adaptive_idle_s)
        _positive(f"{key}.adaptive_idle_fps", self.adaptive_idle_fps)
        if self.adaptive_idle_fps > self.detect_fps:
            raise ConfigError(f"{key}.adaptive_idle_fps: must be <= detect_fps ({self.detect_fps}), got {self.adaptive_idle_fps}")
        _choice(f"{key}.admission", self.admission, ("refuse", "warn"))


# Measured on faces-dev at 960x544 (README "INT8"): with the 11 convolutions of
# RetinaFace-MobileNet0.25's first stage (stride 2-8, 8-64 channels, wide pre-activation ranges)
# kept out of INT8 (with their activations), INT8 loses < 0.3 AP points; with the first 3 or 7
# only, the hard set still loses 2.1 / 1.0 points, and with none 4.7. The output heads (nine 1x1
# convolutions) and the score softmax stay float too: with symmetric INT8 activations (TensorRT's
# form) rounding the boxes and scores costs 0.3 hard AP points, kept float 0.06.
RETINAFACE_INT8_EXCLUDE = (
    "/fx/stage1/stage1.0/stage1.0.0/Conv",
    "/fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv",
    "/fx/stage1/stage1.1/stage1.1.1/stage1.1.1.0/Conv",
    "/fx/stage1/stage1.2/stage1.2.0/stage1.2.0.0/Conv",
    "/fx/stage1/stage1.2/stage1.2.1/stage1.2.1.0/Conv",
    "/fx/stage1/stage1.3/stage1.3.0/stage1.3.0.0/Conv",
    "/fx/stage1/stage1.3/stage1.3.1/stage1.3.1.0/Conv",
    "/fx/stage1/stage1.4/stage1.4.0/stage1.4.0.0/Conv",
    "/fx/stage1/stage1.4/stage1.4.1/stage1.4.1.0/Conv",
    "/fx/stage1/stage1.5/stage1.5.0/stage1.5.0.0/Conv",
    "/fx/stage1/stage1.5/stage1.5.1/stage1.5.1.0/Conv",
    *(f"/{head}/{head}.{level}/Conv" for head in ("class_head", "bbox_head", "landmark_head") for level in range(3)),
    "/Softmax",
)
RETINAFACE_FIRST_STAGE = RETINAFACE_INT8_EXCLUDE[:11]
"""The first-stage convolutions among :data:`RETINAFACE_INT8_EXCLUDE` (each followed by its LeakyReLU)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    onnx: Path = _doc("ONNX face detector, laid out as `kind` says.", default=Path("engines/retinaface_mnet025.onnx"))
    kind: str = _doc('"retinaface", "yolov5face" (deepcam-cn export) or "scrfd" (insightface *_bnkps export).', default="retinaface")
    input: tuple[int, int] = _doc("Letterbox input [width, height] in pixels.", default=(960, 544))
    precision: str = _doc('"fp32", "fp16" (GPU) or "int8" (CPU; GPU with TensorRT).', default="fp32")
    engine: str = _doc('"auto" (ONNX Runtime on the CPU; TensorRT on the GPU when installed, else PyTorch), "onnxruntime", "tensorrt" or "torch".', default="auto")
    score_threshold: float = _doc("Faces scoring below this are discarded.", default=0.5)
    nms_iou: float = _doc("IoU above which the lower-scoring overlapping face is suppressed.", default=0.4)
    intra_op_threads: int = _doc("ONNX Runtime threads inside one operator (0 = the CPU cores shared out among pipeline.infer_workers).", default=0)
    inter_op_threads: int = _doc("ONNX Runtime threads across operators.", default=1)
    calibration: str = _doc('INT8 calibration method: "entropy", "minmax" or "percentile".', default="entropy")
    calib_dir: Path = _doc("Folder of calibration frames for INT8 (filled by `python -m dalistream calibrate`).", default=Path("calib_data"))
    cache_dir: Path = _doc("Where quantized models and TensorRT engines are cached.", default=Path("engines/cache"))
    int8_exclude: tuple[str, ...] = _doc(
        "ONNX node names kept out of INT8, in FP32 on both devices (the INT8 file is one for both); the default suits RetinaFace-MobileNet0.25.",
        default=RETINAFACE_INT8_EXCLUDE,
    )
    profile: tuple[int, int, int] = _doc("TensorRT batch profile [min, opt, max]; `build` for the GPU needs max >= pipeline.max_batch.", default=(1, 4, 8))

    def validate(self, key: str) -> None:
        width, height = self.input
        for name, value in (("width", width), ("height", height)):
            if value < 32 or value % 32:
                raise ConfigError(f"{key}.input: {name} must be a positive multiple of 32, got {value}")
        _choice(f"{key}.kind", self.kind, ("retinaface", "yolov5face", "scrfd"))
        _choice(f"{key}.precision", self.precision, ("fp32", "fp16", "int8"))
        _choice(f"{key}.engine", self.engine, ("auto", "onnxruntime", "tensorrt", "torch"))
        _unit_interval(f"{key}.score_threshold", self.score_threshold)
        _unit_interval(f"{key}.nms_iou", self.nms_iou)
        _at_least(f"{key}.intra_op_threads", self.intra_op_threads, 0)
        _at_least(f"{key}.inter_op_threads", self.inter_op_threads, 0)
        _choice(f"{key}.calibration", self.calibration, ("entropy", "minmax", "percentile"))
        if len(set(self.int8_exclude)) != len(self.int8_exclude) or not all(self.int8_exclude):
            raise ConfigError(f"{key}.int8_exclude: node names must be non-empty and unique")
        low, opt, high = self.profile
        if not 1 <= low <= opt <= high:
            raise ConfigError(f"{key}.profile: batch sizes must satisfy 1 <= min <= opt <= max, got {list(self.profile)}")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    dir: Path = _doc("Directory for the JSON-lines files.", default=Path("out"))
    prefix: str = _doc("File name prefix: <prefix>-<UTC start time>.jsonl.", default="dalistream")
    rotate_mb: float = _doc("Start a new file once the current one reaches this size (MiB).", default=256.0)
    rotate_daily: bool = _doc("Also start a new file when the UTC date changes.", default=True)
    fsync: str = _doc('When written lines are forced onto the disk: after every "batch", when a file is closed ("rotate") or "never" (the kernel decides).', default="rotate")

    def validate(self, key: str) -> None:
        if not self.prefix or "/" in self.prefix:
            raise ConfigError(f"{key}.prefix: must be a non-empty file name part, got {self.prefix!r}")
        _positive(f"{key}.rotate_mb", self.rotate_mb)
        _choice(f"{key}.fsync", self.fsync, ("batch", "rotate", "never"))


@dataclass(frozen=True, slots=True)
class TracksConfig:
    enabled: bool = _doc("Give each face an id across frames (`track`) and write face_appeared / face_left events.", default=True)
    max_missed_s: float = _doc("A face not detected for this long (stream time) has left: its track ends.", default=1.0)
    max_per_camera: int = _doc("Most faces tracked at once per camera; beyond it a frame's weakest new faces are not tracked (counted in faces_untracked events).", default=200)
    min_score: float = _doc("A face scoring below this starts no track (it may continue one).", default=0.6)

    def validate(self, key: str) -> None:
        _positive(f"{key}.max_missed_s", self.max_missed_s)
        _positive(f"{key}.max_per_camera", self.max_per_camera)
        _unit_interval(f"{key}.min_score", self.min_score)


@dataclass(frozen=True, slots=True)
class FacesConfig:
    crops: bool = _doc("Keep the best picture of each tracked face as a JPEG at full resolution under <output.dir>/faces/<camera>/<UTC date>/<track>.jpg (with tracks.enabled).", default=True)
    margin: float = _doc("Margin around the face box in a crop, as a share of the box's width and height on each side.", default=0.25)
    keep_days: int = _doc("Crops whose date folder is older than this many days are deleted (0 = no age limit).", default=30)
    max_mb: float = _doc("Most MiB all crops may take; beyond it the oldest written are deleted.", default=1024.0)

    def validate(self, key: str) -> None:
        _at_least(f"{key}.margin", self.margin, 0)
        _at_least(f"{key}.keep_days", self.keep_days, 0)
        _positive(f"{key}.max_mb", self.max_mb)


@dataclass(frozen=True, slots=True)
class CameraConfig:
    id: str = _doc("Camera name used in every record; unique.")
    url: str = _doc("rtsp:// or rtsps:// (TLS) URL; user:password in it (percent-encoded) is never logged. Or file:///path (or file:path, relative to the config file) of a recorded H.264/H.265 clip.")
    transport: str = _doc('"auto" (TCP first; the other when the camera refuses one with 461, or UDP never arrives; remembered), "tcp" (RTP interleaved on the RTSP connection) or "udp" (TCP if refused).', default="auto")
    timeout_s: float = _doc("RTSP request timeout in seconds.", default=10.0)
    no_data_timeout_s: float = _doc("Reconnect when no RTP packet arrived for this many seconds (UDP that never delivers falls back to TCP).", default=5.0)
    backoff_first_s: float = _doc("Delay before the first reconnect; each further attempt doubles it (with up to 20 % jitter below).", default=0.5)
    backoff_cap_s: float = _doc("Longest delay between reconnect attempts.", default=30.0)
    backoff_reset_s: float = _doc("A session that streamed this long restarts the backoff at backoff_first_s.", default=10.0)
    username: str = _doc("RTSP user name (Basic or Digest); overrides one in the URL.", default="")
    password_env: str = _doc("Name of the environment variable holding the password; overrides one in the URL. Passwords are never read from this file.", default="")
    tls_verify: bool = _doc("rtsps:// only: check the camera's certificate and host name.", default=True)
    tls_ca_file: str = _doc('rtsps:// only: PEM file of CA certificates to trust ("" = the system\'s).', default="")
    max_receive_mbps: float = _doc("A camera sending more than this (Mbit/s over any second) is disconnected, so a flooding peer cannot starve the others.", default=100.0)
    pace: str = _doc('file:// only: "realtime" (at the clip\'s own rate, like a camera) or "fast" (as fast as the pipeline takes it, nothing dropped).', default="realtime")
    loop: bool = _doc("file:// only: start over at the end of the clip (timestamps keep growing) instead of ending the camera.", default=False)
    expect_size: tuple[int, int] = _doc("Stream [width, height] for the capacity plan; [0, 0] = unknown (clips are probed, RTSP cameras assumed 1920x1080).", default=(0, 0))
    expect_fps: float = _doc("Stream frame rate for the capacity plan; 0 = unknown (clips are probed, RTSP cameras assumed 25).", default=0.0)

    @property
    def is_file(self) -> bool:
        """A recorded clip rather than an RTSP camera."""
        return urlsplit(self.url).scheme == "file"

    @property
    def file_path(self) -> Path:
        """The clip's path (``file://`` URLs only)."""
        return Path(unquote(urlsplit(self.url).path))

    def validate(self, key: str) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise ConfigError(f"{key}.id: must be non-empty without spaces, got {self.id!r}")
        if not self.id.isprintable() or any(c in self.id for c in "/\\+#") or self.id in (".", ".."):
            # It names the camera's folder of face crops, a part of URLs and a level of MQTT topics.
            raise ConfigError(f"{key}.id: must not hold '/', '\\', '+', '#' or control characters, nor be '.' or '..'; got {self.id!r}")
        _choice(f"{key}.pace", self.pace, ("realtime", "fast"))
        if self.expect_size != (0, 0) and min(self.expect_size) < 1:
            raise ConfigError(f"{key}.expect_size: [width, height] both > 0, or [0, 0] for unknown; got {list(self.expect_size)}")
        _at_least(f"{key}.expect_fps", self.expect_fps, 0)
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path:
                raise ConfigError(f"{key}.url: a file URL is file:///absolute/path or file:relative/path, got {self.url!r}")
            return
        if self.pace != "realtime" or self.loop:
            raise ConfigError(f"{key}.{'loop' if self.loop else 'pace'}: only for file:// cameras")
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ConfigError(f"{key}.url: must be rtsp://host[:port]/path, rtsps://host[:port]/path or file:///path")
        try:
            port = parts.port
        except ValueError as exc:
            hint = ""
            if "@" in self.url.partition("://")[2]:
                hint = (" (a password holding '#', '?' or '/' cuts the URL short: percent-encode them"
                        " as %23, %3F, %2F, or use password_env)")
            raise ConfigError(f"{key}.url: invalid port{hint}") from exc
        if port == 0:
            raise ConfigError(f"{key}.url: port 0 is not a port a camera listens on (omit it for {DEFAULT_PORTS[parts.scheme]})")
        _choice(f"{key}.transport", self.transport, ("auto", "tcp", "udp"))
        _positive(f"{key}.timeout_s", self.timeout_s)
        _positive(f"{key}.no_data_timeout_s", self.no_data_timeout_s)
        _positive(f"{key}.backoff_first_s", self.backoff_first_s)
        _at_least(f"{key}.backoff_cap_s", self.backoff_cap_s, self.backoff_first_s)
        _positive(f"{key}.backoff_reset_s", self.backoff_reset_s)
        _positive(f"{key}.max_receive_mbps", self.max_receive_mbps)
        self._validate_credentials(key)
        if self.tls_ca_file:
            if parts.scheme != "rtsps":
                raise ConfigError(f"{key}.tls_ca_file: only used with rtsps:// URLs")
            if not Path(self.tls_ca_file).is_file():
                raise ConfigError(f"{key}.tls_ca_file: no such file {self.tls_ca_file!r}")

    def credentials(self) -> tuple[str, str] | None:
        """``(username, password)`` from ``username``/``password_env`` or the URL (percent-decoded).

        ``username`` and ``password_env`` override the URL's user name and password.
        Raises :class:`ConfigError` when ``password_env`` names an unset variable.
        """
        parts = urlsplit(self.url)
        username = self.username or (unquote(parts.username) if parts.username else "")
        if self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ConfigError(f"password_env: environment variable {self.password_env} is not set")
        else:
            password = unquote(parts.password) if parts.password else ""
        return (username, password) if username else None

    def _validate_credentials(self, key: str) -> None:
        if self.password_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.password_env):
            raise ConfigError(f"{key}.password_env: must be an environment variable name, got {self.password_env!r}")
        try:
            credentials = self.credentials()
        except ConfigError as exc:
            raise ConfigError(f"{key}.{exc}") from None
        if self.password_env and credentials is None:
            raise ConfigError(f"{key}.password_env: needs a user name (camera.username or one in the URL)")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    json: bool = _doc("Log as JSON lines instead of console text.", default=False)
    level: str = _doc('"debug", "info", "warning" or "error".', default="info")

    def validate(self, key: str) -> None:
        _choice(f"{key}.level", self.level, ("debug", "info", "warning", "error"))


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = _doc('host:port of the HTTP server (metrics, health, camera API, status page); "" = off. Use 0.0.0.0:PORT to serve other machines.', default="")
    token_env: str = _doc('Name of the environment variable holding the bearer token that POST and DELETE requests must carry ("" = no token).', default="")
    snapshot_fps: float = _doc("Most snapshots (latest.jpg) drawn per second per camera; requests in between get the last one.", default=4.0)

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port); IPv6 hosts are written ``[::1]:8080``."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def token(self) -> str | None:
        """The token write requests need, or None when ``token_env`` is unset."""
        if not self.token_env:
            return None
        token = os.environ.get(self.token_env, "")
        if not token:
            raise ConfigError(f"http.token_env: environment variable {self.token_env} is not set or empty")
        return token

    def validate(self, key: str) -> None:
        if self.listen:
            host, sep, port = self.listen.rpartition(":")
            if not sep or not host.strip("[]") or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"{key}.listen: expected host:port, e.g. 127.0.0.1:8080, got {self.listen!r}")
        if self.token_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.token_env):
            raise ConfigError(f"{key}.token_env: must be an environment variable name, got {self.token_env!r}")
        _positive(f"{key}.snapshot_fps", self.snapshot_fps)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    address: str = _doc('Ray cluster to run on: "" starts a local Ray instance in this process; the head\'s GCS "host:port" (as `ray start --head` printed it) or "auto" (the cluster `ray start` runs on this machine) joins an existing one.', default="")
    cpu_workers: int = _doc("Workers that run cameras on CPU cores (one Ray actor each; on the CPU device plan).", default=2)
    worker_cpus: float = _doc("CPU cores each CPU worker reserves in Ray (its capacity in the plan).", default=1.0)
    workers_per_gpu: int = _doc("Workers per GPU on the GPU device plan (each pinned to its GPU share).", default=1)
    rebalance_s: float = _doc("Least time between two rebalancings of running cameras onto workers that came back (0 = never move a running camera).", default=0.0)
    health_timeout_s: float = _doc("A worker whose health does not answer within this long is taken for dead; its cameras move.", default=5.0)
    gather_output: bool = _doc("Write every worker's records into the coordinator's files (one stream; each camera's records in order across moves) instead of a file set per worker.", default=False)

    def validate(self, key: str) -> None:
        if self.address.startswith("ray://"):
            raise ConfigError(f"{key}.address: Ray Client addresses (ray://) are not supported: the coordinator reads the "
                              f"cluster's state, which a Ray Client cannot; give the head's host:port (6379 unless "
                              f"`ray start --head --port` said otherwise), got {self.address!r}")
        if self.address and self.address != "auto" and ":" not in self.address:
            raise ConfigError(f'{key}.address: expected "", "auto" or "host:port", got {self.address!r}')
        _positive(f"{key}.cpu_workers", self.cpu_workers)
        _positive(f"{key}.worker_cpus", self.worker_cpus)
        _positive(f"{key}.workers_per_gpu", self.workers_per_gpu)
        _at_least(f"{key}.rebalance_s", self.rebalance_s, 0)
        _positive(f"{key}.health_timeout_s", self.health_timeout_s)


MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}  # IANA


@dataclass(frozen=True, slots=True)
class MqttConfig:
    url: str = _doc("Broker: mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS, default 8883). No credentials in it: use `username` and `password_env`.", default="mqtt://127.0.0.1:1883")
    username: str = _doc("User name for the broker (\"\" = connect anonymously).", default="")
    password_env: str = _doc("Name of the environment variable holding the broker password. Passwords are never read from this file.", default="")
    client_id: str = _doc('MQTT client id ("" = a random one each connection); a cluster worker appends "-<worker>".', default="")
    topic_prefix: str = _doc("First level(s) of every topic: <prefix>/available, <prefix>/<camera>/events, ….", default="dalistream")
    qos: int = _doc("QoS of every message: 0 (at most once) or 1 (at least once: held and sent again until the broker acknowledges it).", default=1)
    publish_detections: bool = _doc("Also publish every detections record to <prefix>/<camera>/detections (one message per analysed frame).", default=False)
    buffer_messages: int = _doc("Messages held while the broker is away or slow; beyond it the oldest are dropped (counted, and said in an mqtt_gap event).", default=10_000)
    stats_interval_s: float = _doc("How often the /health summary is published to <prefix>/stats.", default=60.0)
    backoff_cap_s: float = _doc("Longest delay between connection attempts (they start at 0.5 s and double, jittered).", default=30.0)
    tls_verify: bool = _doc("mqtts:// only: check the broker's certificate and host name.", default=True)
    tls_ca_file: str = _doc('mqtts:// only: PEM file of CA certificates to trust ("" = the system\'s).', default="")

    @property
    def address(self) -> tuple[str, int, bool]:
        """(host, port, tls) of ``url``."""
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or MQTT_PORTS[parts.scheme], parts.scheme == "mqtts"

    def password(self) -> str | None:
        """The password from ``password_env`` (None without one); :class:`ConfigError` when the
        variable is unset."""
        if not self.password_env:
            return None
        password = os.environ.get(self.password_env)
        if password is None:
            raise ConfigError(f"mqtt.password_env: environment variable {self.password_env} is not set")
        return password

    def validate(self, key: str) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in MQTT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"{key}.url: must be mqtt://host[:port] or mqtts://host[:port], got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(f"{key}.url: no credentials in the URL; use {key}.username and {key}.password_env")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{key}.url: invalid port") from exc
        if port == 0:
            raise ConfigError(f"{key}.url: port 0 is not a port a broker listens on")
        if self.password_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.password_env):
            raise ConfigError(f"{key}.password_env: must be an environment variable name, got {self.password_env!r}")
        if self.password_env and not self.username:
            raise ConfigError(f"{key}.password_env: needs {key}.username")
        self.password()
        prefix = self.topic_prefix
        for bad, name in (("+", "'+'"), ("#", "'#'"), ("\0", "NUL")):
            if bad in prefix:
                raise ConfigError(f"{key}.topic_prefix: must not hold {name} (MQTT wildcards and NUL are not allowed in a topic name), got {prefix!r}")
        if not prefix or prefix.startswith(("/", "$")) or prefix.endswith("/") or "//" in prefix:
            raise ConfigError(f"{key}.topic_prefix: must be non-empty topic levels without a leading '$' or empty levels, got {prefix!r}")
        if self.qos not in (0, 1):
            raise ConfigError(f"{key}.qos: must be 0 or 1, got {self.qos}")
        _positive(f"{key}.buffer_messages", self.buffer_messages)
        _positive(f"{key}.stats_interval_s", self.stats_interval_s)
        _at_least(f"{key}.backoff_cap_s", self.backoff_cap_s, 0.5)
        if self.tls_ca_file:
            if parts.scheme != "mqtts":
                raise ConfigError(f"{key}.tls_ca_file: only used with mqtts:// URLs")
            if not Path(self.tls_ca_file).is_file():
                raise ConfigError(f"{key}.tls_ca_file: no such file {self.tls_ca_file!r}")


@dataclass(frozen=True, slots=True)
class Config:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    tracks: TracksConfig = field(default_factory=TracksConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    cluster: ClusterConfig | None = _doc("Present: the cameras run on workers of a Ray cluster (see README, Cluster mode).", default=None)
    mqtt: MqttConfig | None = _doc("Present: records are also published to an MQTT broker (see README, MQTT).", default=None)
    camera: tuple[CameraConfig, ...] = ()

    def validate(self) -> None:
        self.pipeline.validate("pipeline")
        self.model.validate("model")
        self.output.validate("output")
        self.logging.validate("logging")
        self.http.validate("http")
        self.tracks.validate("tracks")
        self.faces.validate("faces")
        if self.cluster is not None:
            self.cluster.validate("cluster")
        if self.mqtt is not None:
            self.mqtt.validate("mqtt")
        if not self.camera:
            raise ConfigError("camera: at least one [[camera]] table is required")
        seen: set[str] = set()
        for index, camera in enumerate(self.camera):
            camera.validate(f"camera[{index}]")
            if camera.id in seen:
                raise ConfigError(f"camera[{index}].id: duplicate id {camera.id!r}")
            seen.add(camera.id)


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file; relative paths in it resolve against its directory."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    config = from_mapping(data)
    base = path.parent
    return dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            onnx=_resolve(base, config.model.onnx),
            calib_dir=_resolve(base, config.model.calib_dir),
            cache_dir=_resolve(base, config.model.cache_dir),
        ),
        output=dataclasses.replace(config.output, dir=_resolve(base, config.output.dir)),
        camera=tuple(_resolve_camera(base, camera) for camera in config.camera),
    )


def camera_from_mapping(data: Any, base: Path, key: str = "camera") -> CameraConfig:
    """One ``[[camera]]`` table (e.g. a JSON body), validated as the config file's are; a
    relative clip path resolves against ``base`` (the config file's directory)."""
    camera = _build(CameraConfig, data, key)
    camera.validate(key)
    return _resolve_camera(base, camera)


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from parsed TOML."""
    config = _build(Config, data, "")
    config.validate()
    return config


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user names are kept for diagnosis)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def _resolve_camera(base: Path, camera: CameraConfig) -> CameraConfig:
    return dataclasses.replace(camera, url=_resolve(base, camera.file_path).as_uri()) if camera.is_file else camera


def _build(cls: type, data: Any, key: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    hints = get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{sub}: required key missing")
            continue
        values[name] = _convert(hints[name], data[name], sub)
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin is UnionType:  # an optional table (X | None): present in the file, so built
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _convert(hint, value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected an array, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(arg, item, f"{key}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path string")
        return Path(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int or hint is bool or hint is str:
        if type(value) is not hint:
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}; got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}: must be > 0, got {value}")


def _at_least(key: str, value: float, minimum: float) -> None:
    if not value >= minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}")


def _unit_interval(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be between 0 and 1, got {value}")

