"""A local MQTT broker (Debian's ``mosquitto``, as a child process on a free port) and a
subscriber, for the tests and the MQTT measurements (``scripts/mqtt_cost.py``, ``scripts/mqtt_soak.py``).

:class:`Mosquitto` writes its own config under a folder of its own: a listener on 127.0.0.1
(TLS with ``tls``), a password file with ``user``, persistence (sessions and queued messages
kept across a stop, saved every second), and can be stopped (SIGTERM), killed (SIGKILL) and
started again on the same port. :class:`Subscriber` is a paho-mqtt client on a persistent
session (``clean_session=False``) that reconnects by itself, so it misses nothing a restarted
broker kept for it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """The broker could not be set up or started."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with Debian's openssl."""
    if shutil.which("openssl") is None:
        raise BrokerError("openssl missing: apt-get install openssl")
    cert, key = folder / "broker-cert.pem", folder / "broker-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class Mosquitto:
    """One broker (see the module docstring); ``user``: (name, password) required to connect (a
    test password: it goes through ``mosquitto_passwd``'s command line)."""

    def __init__(self, folder: Path, *, user: tuple[str, str] | None = None, tls: bool = False) -> None:
        if not Path(MOSQUITTO).is_file():
            raise BrokerError("mosquitto missing: run scripts/setup.sh --test (or apt-get install mosquitto)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cert = None
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {'false' if user else 'true'}",
                 "persistence true", f"persistence_location {folder}/", "autosave_interval 1",
                 f"log_dest file {folder}/mosquitto.log", "log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            lines.append("user root")  # it would drop to the user mosquitto, who cannot read the test's folder
        if tls:
            self.cert, key = tls_files(folder)
            lines += [f"certfile {self.cert}", f"keyfile {key}"]
        if user:
            passwords = folder / "passwords"
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), *user], check=True, capture_output=True, timeout=30)
            lines.append(f"password_file {passwords}")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.cert else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"mosquitto exited: {self._process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise BrokerError("mosquitto did not listen within 10 s")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop (sessions saved); SIGKILL: killed."""
        if self._process is not None:
            self._process.send_signal(sig)
            self._process.wait(10)
            self._process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Subscriber:
    """Collects every message under ``topic`` (QoS 1, persistent session) as (topic, payload, retain)."""

    def __init__(self, broker: Mosquitto, topic: str = "#", *, user: tuple[str, str] | None = None, name: str = "checker") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._topic = topic
        self._subscribed = threading.Event()
        client = self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        if user:
            client.username_pw_set(*user)
        if broker.cert is not None:
            client.tls_set(ca_certs=str(broker.cert), cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(0.1, 0.5)
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(self._topic, qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._message
        client.connect("127.0.0.1", broker.port, keepalive=5)
        client.loop_start()
        if not self._subscribed.wait(10):
            raise BrokerError("the subscriber did not subscribe within 10 s")

    def _message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def received(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def json(self, topic_suffix: str = "") -> list[dict[str, Any]]:
        """Every JSON message whose topic ends with ``topic_suffix``, parsed."""
        return [json.loads(payload) for topic, payload, _ in self.received()
                if topic.endswith(topic_suffix) and payload[:1] == b"{"]

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.received()):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
