"""The local GStreamer RTSP server (``rtsp_server.py`` beside this module) as a child process.

It needs Debian's Python with PyGObject and gst-rtsp-server, not the project's virtualenv, so it
always runs as a separate process; it prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PASSWORD_ENV = "RTSP_SERVER_PASSWORD"  # rtsp_server.py reads --user's password from here


class ServerError(RuntimeError):
    """The server could not be started."""


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """Credentials the server demands on every mount, and the scheme it offers."""

    user: str
    password: str = field(repr=False)
    method: str = "digest"  # or "basic"


class LocalRtspServer:
    """Serves ``clip`` (Annex-B ``codec``: "h264" or "h265") on ``/cam0 … /cam{mounts-1}``, looping, untranscoded.

    With ``auth`` every mount demands those credentials (the password reaches the child through
    its environment, never its command line); with ``tls_cert``/``tls_key`` (PEM) it speaks RTSPS.
    """

    def __init__(
        self,
        clip: Path,
        mounts: int,
        *,
        port: int = 0,
        address: str = "127.0.0.1",
        auth: ServerAuth | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        codec: str = "h264",
    ) -> None:
        self.clip = clip
        self.codec = codec
        self.mounts = mounts
        self.address = address
        self.port = port
        self.auth = auth
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self._process: subprocess.Popen[str] | None = None

    def url(self, index: int) -> str:
        scheme = "rtsps" if self.tls_cert is not None else "rtsp"
        return f"{scheme}://{self.address}:{self.port}/cam{index}"

    def start(self, timeout_s: float = 20.0) -> LocalRtspServer:
        if not self.clip.is_file():
            raise ServerError(f"clip {self.clip} is missing")
        command = [
            SYSTEM_PYTHON, str(SCRIPT),
            "--file", str(self.clip),
            "--mounts", str(self.mounts),
            "--port", str(self.port),
            "--address", self.address,
            "--codec", self.codec,
        ]
        env = None
        if self.auth is not None:
            command += ["--user", self.auth.user, "--auth", self.auth.method]
            env = {**os.environ, PASSWORD_ENV: self.auth.password}
        if self.tls_cert is not None and self.tls_key is not None:
            command += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        try:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env
            )
        except OSError as exc:
            raise ServerError(f"cannot run {SYSTEM_PYTHON} (install python3-gi and gir1.2-gst-rtsp-server-1.0)") from exc
        line = self._read_line(timeout_s)
        if not line.startswith("READY "):
            self.stop()
            raise ServerError(f"RTSP server did not start (said {line!r}); see its stderr above")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGCONT)  # a paused server could not act on SIGTERM
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        process.stdout.close()

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (``None`` before start and after stop)."""
        return None if self._process is None else self._process.pid

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far (0 once stopped)."""
        if self._process is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is sent or answered."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGCONT)

    def __enter__(self) -> LocalRtspServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_line(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        stdout = self._process.stdout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                return stdout.readline().strip()
            if self._process.poll() is not None:
                break
        return ""
