import re
import textwrap
from pathlib import Path

import pytest

from dalistream.config import ConfigError, from_mapping, load, redact_url

CAMERA = {"id": "cam0", "url": "rtsp://127.0.0.1:8554/cam0"}


def test_issue_example_loads_and_resolves_paths(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(textwrap.dedent("""
        [pipeline]
        device = "cpu"
        detect_fps = 5.0
        max_batch = 8
        max_wait_ms = 20
        [model]
        onnx = "engines/retinaface_mnet025.onnx"
        input = [960, 544]
        precision = "fp32"
        score_threshold = 0.5
        nms_iou = 0.4
        [output]
        dir = "out"
        [[camera]]
        id = "cam0"
        url = "rtsp://127.0.0.1:8554/cam0"
        transport = "tcp"
    """))
    config = load(site)
    assert config.pipeline.max_wait_ms == 20.0
    assert config.model.input == (960, 544)
    assert config.model.onnx == tmp_path / "engines/retinaface_mnet025.onnx"
    assert config.output.dir == tmp_path / "out"
    assert config.camera[0].transport == "tcp"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"camera": [CAMERA], "pipeline": {"fps": 5}}, "pipeline.fps: unknown key"),
        ({"camera": [CAMERA], "pipeline": {"detect_fps": "5"}}, "pipeline.detect_fps: expected a number"),
        ({"camera": [CAMERA], "pipeline": {"detect_fps": 0}}, "pipeline.detect_fps: must be > 0"),
        ({"camera": [CAMERA], "pipeline": {"max_batch": 2.5}}, "pipeline.max_batch: expected int"),
        ({"camera": [CAMERA], "pipeline": {"adaptive": True, "adaptive_idle_fps": 6.0}}, "pipeline.adaptive_idle_fps: must be <= detect_fps"),
        ({"camera": [CAMERA], "pipeline": {"adaptive_idle_s": 0}}, "pipeline.adaptive_idle_s: must be > 0"),
        ({"camera": [CAMERA], "pipeline": {"infer_workers": -1}}, "pipeline.infer_workers: must be >= 0"),
        ({"camera": [CAMERA], "pipeline": {"device": "tpu"}}, "pipeline.device: must be one of"),
        ({"camera": [CAMERA], "model": {"input": [960]}}, "model.input: expected 2 values"),
        ({"camera": [CAMERA], "model": {"input": [960, 540]}}, "model.input: height must be a positive multiple of 32"),
        ({"camera": [CAMERA], "model": {"score_threshold": 2}}, "model.score_threshold: must be between 0 and 1"),
        ({"camera": [CAMERA], "output": {"rotate_daily": "yes"}}, "output.rotate_daily: expected bool"),
        ({}, "camera: at least one"),
        ({"camera": [{"id": "x"}]}, "camera[0].url: required key missing"),
        ({"camera": [CAMERA, {"id": "cam1", "url": "http://x/"}]}, "camera[1].url: must be rtsp://"),
        ({"camera": [CAMERA, {"id": "cam1", "url": "rtsp://h/x", "transport": "sctp"}]}, "camera[1].transport"),
        ({"camera": [CAMERA, dict(CAMERA)]}, "camera[1].id: duplicate id"),
        ({"camera": CAMERA}, "camera: expected an array"),
        ({"camera": [{"id": "c", "url": "rtsp://h:0/x"}]}, "camera[0].url: port 0 is not a port a camera listens on (omit it for 554)"),
        ({"camera": [{"id": "c", "url": "rtsp://admin:pa#ss@h/x"}]}, "camera[0].url: invalid port (a password holding '#', '?' or '/' cuts the URL short: percent-encode them"),
        ({"camera": [{"id": "c", "url": "rtsp://h/x", "loop": True}]}, "camera[0].loop: only for file:// cameras"),
        ({"camera": [{"id": "c", "url": "file://host/clip.h264"}]}, "camera[0].url: a file URL is file:///absolute/path"),
        ({"camera": [CAMERA], "output": {"fsync": "always"}}, "output.fsync: must be one of batch, rotate, never"),
        ({"camera": [{"id": "c", "url": "rtsp://h/x", "max_receive_mbps": 0}]}, "camera[0].max_receive_mbps: must be > 0"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        from_mapping(data)


def test_invalid_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.toml")


def test_redact_url_hides_only_the_password():
    assert redact_url("rtsp://admin:s%40cret@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert redact_url("rtsp://10.0.0.5/s") == "rtsp://10.0.0.5/s"


def test_cluster_table_is_optional_and_validated():
    assert from_mapping({"camera": [CAMERA]}).cluster is None
    cluster = from_mapping({"cluster": {"address": "head:6379", "cpu_workers": 3}, "camera": [CAMERA]}).cluster
    assert (cluster.address, cluster.cpu_workers, cluster.worker_cpus, cluster.rebalance_s) == ("head:6379", 3, 1.0, 0.0)
    assert not cluster.gather_output
    assert from_mapping({"cluster": {}, "camera": [CAMERA]}).cluster.address == ""  # an empty table: a local Ray instance
    for table, key in [({"cpu_workers": 0}, "cluster.cpu_workers"), ({"address": "head"}, "cluster.address"),
                       ({"rebalance_s": -1}, "cluster.rebalance_s"), ({"workers": 2}, "cluster.workers"),
                       ({"worker_cpus": "2"}, "cluster.worker_cpus"), ({"address": "ray://head:10001"}, "cluster.address"),
                       ({"gather_output": "yes"}, "cluster.gather_output")]:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}"):
            from_mapping({"cluster": table, "camera": [CAMERA]})


def test_mqtt_table_is_optional_and_validated(monkeypatch):
    assert from_mapping({"camera": [CAMERA]}).mqtt is None
    mqtt = from_mapping({"mqtt": {"url": "mqtts://broker.lan"}, "camera": [CAMERA]}).mqtt
    assert (mqtt.address, mqtt.topic_prefix, mqtt.qos, mqtt.buffer_messages) == (("broker.lan", 8883, True), "dalistream", 1, 10_000)
    monkeypatch.setenv("BROKER_PASSWORD", "s3cret")
    assert from_mapping({"mqtt": {"username": "u", "password_env": "BROKER_PASSWORD"}, "camera": [CAMERA]}).mqtt.password() == "s3cret"
    for table, key in [({"topic_prefix": "site/+"}, "mqtt.topic_prefix: must not hold '+'"),
                       ({"topic_prefix": "site/#"}, "mqtt.topic_prefix: must not hold '#'"),
                       ({"topic_prefix": "si\0te"}, "mqtt.topic_prefix: must not hold NUL"),
                       ({"topic_prefix": "site/"}, "mqtt.topic_prefix: must be non-empty topic levels"),
                       ({"topic_prefix": "$SYS"}, "mqtt.topic_prefix: must be non-empty topic levels"),
                       ({"url": "tcp://broker"}, "mqtt.url: must be mqtt://host[:port] or mqtts://"),
                       ({"url": "mqtt://user:pw@broker"}, "mqtt.url: no credentials in the URL"),
                       ({"qos": 2}, "mqtt.qos: must be 0 or 1"),
                       ({"buffer_messages": 0}, "mqtt.buffer_messages: must be > 0"),
                       ({"password_env": "BROKER_PASSWORD"}, "mqtt.password_env: needs mqtt.username"),
                       ({"username": "u", "password_env": "UNSET_BROKER_PASSWORD"}, "mqtt.password_env: environment variable UNSET_BROKER_PASSWORD is not set"),
                       ({"tls_ca_file": "ca.pem"}, "mqtt.tls_ca_file: only used with mqtts://"),
                       ({"password": "s3cret"}, "mqtt.password: unknown key")]:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}"):
            from_mapping({"mqtt": table, "camera": [CAMERA]})


@pytest.mark.parametrize("camera_id", ["lobby/1", "lobby+", "#lobby", "lob\0by"])
def test_camera_ids_are_mqtt_topic_levels(camera_id):
    with pytest.raises(ConfigError, match=re.escape("camera[0].id: must not hold '/', '\\', '+', '#' or control characters")):
        from_mapping({"camera": [{"id": camera_id, "url": "rtsp://h/x"}]})
