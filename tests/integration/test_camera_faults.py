"""Fault injection against real parts: the GStreamer RTSP server killed, restarted and frozen;
5 % UDP loss through a relay; an unreachable host; fake cameras that speak garbage, refuse UDP
(461), never send UDP or never answer. Every fault must become events, the camera must come back
by itself, and no camera may slow another.

Each test runs the whole pipeline (ONNX model included) for 10–20 s; timings are kept generous
because the machine is shared. Small synthetic clips (320×240, an IDR every 10 frames) keep the
decode cost low and let a lossy stream find intact IDRs often.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dalistream import config as config_module
from dalistream.config import CameraConfig
from dalistream.ingest.camera import CameraIngest
from dalistream.tools.localserver import LocalRtspServer
from dalistream.metrics import Stages
from dalistream.pipeline.runtime import Runtime
from clips import encode
from conftest import MODEL
from lossy_relay import LossyRelay
from pipeline_runs import run_pipeline

pytestmark = pytest.mark.integration

BACKOFF_CAP_S = 2.0
FAST_CAMERA = {"timeout_s": 2.0, "no_data_timeout_s": 2.0, "backoff_first_s": 0.2, "backoff_cap_s": BACKOFF_CAP_S}


# ----------------------------------------------------------------------------- media


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    return encode(tmp_path_factory.mktemp("clips") / "small_320x240.h264", [(320, 240, 100)])


@pytest.fixture(scope="module")
def switching_clip(tmp_path_factory) -> Path:
    """The resolution changes mid-stream (at an IDR with new SPS), and back at the loop seam."""
    return encode(tmp_path_factory.mktemp("clips") / "switch_320x240_480x272.h264", [(320, 240, 50), (480, 272, 50)])


@pytest.fixture
def serve(gst_rtsp_server_available: None, model_path: Path):
    """Factory: ``serve(clip, mounts, port=0)`` runs the real server; stopped after the test."""
    started: list[LocalRtspServer] = []

    def start(clip: Path, mounts: int, port: int = 0) -> LocalRtspServer:
        server = LocalRtspServer(clip, mounts, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# ----------------------------------------------------------------------------- running


def _config(cameras: list[dict[str, Any]], out: Path) -> config_module.Config:
    return config_module.from_mapping(
        {
            "pipeline": {"device": "cpu", "detect_fps": 5.0, "max_batch": 4},
            "model": {"onnx": str(MODEL), "input": [320, 256]},
            "output": {"dir": str(out), "prefix": "faults"},
            "camera": cameras,
        }
    )


def _camera(camera_id: str, url: str, transport: str = "tcp", **overrides: Any) -> dict[str, Any]:
    return {"id": camera_id, "url": url, "transport": transport, **FAST_CAMERA, **overrides}


def _run(config: config_module.Config, duration_s: float, scenario: Callable[[], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Run the pipeline for ``duration_s`` while ``scenario`` plays; returns every JSON line."""
    return run_pipeline(config, duration_s, scenario)[0]


def _of(lines: list[dict[str, Any]], camera: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line["camera"] == camera
        and (kind is None or (line["type"] == "detections" if kind == "detections" else line.get("event") == kind))
    ]


def _time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["wallclock"].replace("Z", "+00:00")).timestamp()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _analysed_fps(detections: list[dict[str, Any]]) -> float:
    span = detections[-1]["pts"] - detections[0]["pts"]
    return (len(detections) - 1) / span


# ----------------------------------------------------------------------------- tests


def test_server_killed_and_restarted_every_camera_resumes(serve, small_clip: Path, tmp_path: Path):
    port = _free_port()
    server = serve(small_clip, 2, port)
    config = _config([_camera("tcp", server.url(0)), _camera("udp", server.url(1), "udp")], tmp_path)
    restarted_at: list[float] = []

    async def scenario() -> None:
        await asyncio.sleep(4.0)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(server.start)
        restarted_at.append(time.time())

    lines = _run(config, 12.0, scenario)
    assert restarted_at, "server did not restart"
    for camera in ("tcp", "udp"):
        assert len(_of(lines, camera, "connected")) >= 2, camera
        assert _of(lines, camera, "disconnected"), camera
        attempts = [e["attempt"] for e in _of(lines, camera, "reconnecting")]
        assert attempts[:2] == [1, 2], (camera, attempts)
        assert all(e["delay_s"] <= BACKOFF_CAP_S for e in _of(lines, camera, "reconnecting"))
        after = [d for d in _of(lines, camera, "detections") if _time(d) > restarted_at[0]]
        assert after, f"{camera} never resumed analysing"
        assert _time(after[0]) - restarted_at[0] <= BACKOFF_CAP_S + 2.0, camera
        assert _of(lines, camera, "connected")[-1]["transport"] == camera


def test_stalled_server_times_out_and_recovers(serve, small_clip: Path, tmp_path: Path):
    server = serve(small_clip, 1)
    config = _config([_camera("cam0", server.url(0))], tmp_path)
    resumed_at: list[float] = []

    async def scenario() -> None:
        await asyncio.sleep(3.0)
        await asyncio.to_thread(server.pause)
        await asyncio.sleep(4.0)
        await asyncio.to_thread(server.resume)
        resumed_at.append(time.time())

    lines = _run(config, 14.0, scenario)
    reasons = [e["reason"] for e in _of(lines, "cam0", "disconnected")]
    assert reasons and reasons[0] == "no data for 2 s", reasons
    assert len(_of(lines, "cam0", "connected")) >= 2
    after = [d for d in _of(lines, "cam0", "detections") if _time(d) > resumed_at[0]]
    assert len(after) >= 10, "camera did not recover after the server resumed"


def test_udp_loss_reports_gaps_and_recovers_without_disturbing_others(serve, small_clip: Path, tmp_path: Path):
    server = serve(small_clip, 2)
    relays: list[LossyRelay] = []
    run_s = 12.0

    async def main() -> list[dict[str, Any]]:
        async with LossyRelay("127.0.0.1", server.port, loss=0.05, seed=7) as relay:
            relays.append(relay)
            config = _config(
                [_camera("clean", server.url(0)), _camera("lossy", relay.url("cam1"), "udp")], tmp_path
            )
            runtime = Runtime(config)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(run_s, stop.set)
            await runtime.run(stop)
        return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]

    lines = asyncio.run(main())
    relay = relays[0]
    assert relay.forwarded > 500 and 0.02 < relay.dropped / relay.forwarded < 0.09, (relay.forwarded, relay.dropped)

    gaps = _of(lines, "lossy", "gap")
    assert sum(g.get("packets_lost", 0) for g in gaps) > 0
    assert sum(g.get("frames_lost", 0) for g in gaps) > 0
    lossy = _of(lines, "lossy", "detections")
    # Decoding recovers at the next intact IDR, again and again: frames keep being analysed
    # after the first loss was reported.
    assert len([d for d in lossy if _time(d) > _time(gaps[0])]) >= 5
    assert not _of(lines, "lossy", "disconnected")

    clean = _of(lines, "clean", "detections")
    assert not _of(lines, "clean", "gap") and not _of(lines, "clean", "disconnected")
    assert len(clean) >= 5 * (run_s - 6)
    assert _analysed_fps(clean) == pytest.approx(5.0, rel=0.1)


def test_resolution_change_mid_stream_switches_record_size(serve, switching_clip: Path, tmp_path: Path):
    server = serve(switching_clip, 1)
    lines = _run(_config([_camera("cam0", server.url(0))], tmp_path), 9.0)
    detections = _of(lines, "cam0", "detections")
    sizes = [(d["width"], d["height"]) for d in detections]
    assert set(sizes) == {(320, 240), (480, 272)}, set(sizes)
    switches = sum(1 for a, b in zip(sizes, sizes[1:]) if a != b)
    assert switches >= 3, sizes  # 2 s per loop of the file: 320×240 → 480×272 → 320×240 → …
    assert not _of(lines, "cam0", "gap") and not _of(lines, "cam0", "disconnected")


# ----------------------------------------------------------------------------- fake cameras

SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fake\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
    "a=control:trackID=0\r\n"
)


class FakeCamera:
    """A tiny RTSP server on port 0 that misbehaves in one way (``mode``).

    ``keepalive``: session timeout 2 s; after PLAY sends a valid RTP packet (a non-IDR slice) every
    50 ms and records the methods it receives. ``garbage``: plays over TCP, then sends interleaved frames of random bytes (and some
    frames on unknown channels), then raw non-RTSP bytes. ``reject_udp``: answers a UDP SETUP
    with 461, then behaves like ``garbage``. ``silent_udp``: accepts UDP and sends nothing;
    over TCP behaves like ``garbage``. ``mute``: accepts connections and never answers.
    ``quirky``: a SETUP reply with ``Session: 1;timeout=sixty`` sent twice and ``Public`` sent
    twice in OPTIONS, then plays like ``keepalive``. ``bad_ports``: a UDP SETUP reply with
    ``server_port=rtp-rtcp``, which aiortsp's UDP transport raises ``ValueError`` on.
    ``endless_header``: answers OPTIONS with a header line that never ends, at several MB/s.
    ``flood``: after PLAY, valid-looking RTP as fast as the socket takes it.
    ``hostile_text``: answers OPTIONS with terminal escapes and 100 KB of text on its status line.
    ``udp_only``: answers an interleaved (TCP) SETUP with 461, as VLC's RTSP output does; over UDP
    plays like ``keepalive``, its packets sent to the client's ports.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.connections = 0
        self._udp = False  # the last SETUP asked for RTP over UDP
        self._client_rtp_port = 0  # where the client wants RTP over UDP
        self.methods: list[tuple[float, str]] = []  # (time.monotonic(), method) received
        self._random = random.Random(3)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/fake"

    async def __aenter__(self) -> FakeCamera:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            if self.mode == "mute":
                await reader.read()
                return
            if self.mode == "endless_header":
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Endless: ")
                while True:
                    writer.write(b"a" * 65536)
                    await writer.drain()
                    await asyncio.sleep(0.01)
            if self.mode == "hostile_text":
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"RTSP/1.0 OK\x1b[2J\x1b[31mOWNED\x07" + b"z" * 100_000 + b"\r\n\r\n")
                await writer.drain()
                await reader.read()
                return
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method = head.split(" ", 1)[0]
                self.methods.append((time.monotonic(), method))
                cseq = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("cseq"))
                if method == "PLAY":
                    writer.write(self._reply(cseq, "200 OK", {"Session": "1"}))
                    if self.mode in ("keepalive", "quirky"):
                        self._tasks.add(asyncio.create_task(self._trickle(writer)))
                    elif self.mode == "udp_only":
                        self._tasks.add(asyncio.create_task(self._trickle_udp()))
                    elif self.mode == "flood":
                        await self._flood(writer)
                    elif not self._udp:
                        await self._spew(writer)
                    continue
                writer.write(self._answer(method, cseq, head))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    def _answer(self, method: str, cseq: str, head: str) -> bytes:
        if method == "OPTIONS" and self.mode == "quirky":
            return self._reply(cseq, "200 OK", {"Public": ["OPTIONS, DESCRIBE, SETUP", "PLAY, TEARDOWN, GET_PARAMETER"]})
        if method == "OPTIONS":
            return self._reply(cseq, "200 OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"})
        if method == "DESCRIBE":
            return self._reply(cseq, "200 OK", {"Content-Type": "application/sdp"}, SDP.encode())
        if method == "SETUP":
            transport = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("transport"))
            self._udp = "client_port" in transport
            if self._udp and self.mode == "reject_udp":
                return self._reply(cseq, "461 Unsupported Transport", {})
            if not self._udp and self.mode == "udp_only":
                return self._reply(cseq, "461 Unsupported Transport", {})
            if self._udp:
                self._client_rtp_port = int(transport.split("client_port=")[1].split("-")[0])
            if self._udp and self.mode == "bad_ports":
                transport += ";server_port=rtp-rtcp"
            elif self._udp:
                transport += ";server_port=9-10"  # discard ports: nothing is ever sent
            if self.mode == "quirky":
                return self._reply(cseq, "200 OK", {"Transport": transport, "Session": ["1;timeout=sixty"] * 2})
            timeout = 2 if self.mode == "keepalive" else 60
            return self._reply(cseq, "200 OK", {"Transport": transport, "Session": f"1;timeout={timeout}"})
        return self._reply(cseq, "200 OK", {"Session": "1"})

    @staticmethod
    def _reply(cseq: str, status: str, headers: dict[str, str | list[str]], body: bytes = b"") -> bytes:
        """A reply; a header given a list of values is sent once per value."""
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"]
        for name, values in headers.items():
            lines += [f"{name}: {value}" for value in ([values] if isinstance(values, str) else values)]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @staticmethod
    async def _trickle(writer: asyncio.StreamWriter) -> None:
        for seq in range(10_000):
            header = bytes([0x80, 0x80 | 96]) + seq.to_bytes(2, "big") + (seq * 3600).to_bytes(4, "big") + b"\0\0\0\1"
            writer.write(b"$\0" + (len(header) + 3).to_bytes(2, "big") + header + b"\x41\x9a\x00")  # a P slice
            await writer.drain()
            await asyncio.sleep(0.05)

    async def _trickle_udp(self) -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            for seq in range(10_000):
                header = bytes([0x80, 0x80 | 96]) + seq.to_bytes(2, "big") + (seq * 3600).to_bytes(4, "big") + b"\0\0\0\1"
                transport.sendto(header + b"\x41\x9a\x00", ("127.0.0.1", self._client_rtp_port))
                await asyncio.sleep(0.05)
        finally:
            transport.close()

    @staticmethod
    async def _flood(writer: asyncio.StreamWriter) -> None:
        payload = b"\x41\x9a" + bytes(1400)  # a P slice's start, zeros after
        for seq in range(1_000_000):
            header = bytes([0x80, 96]) + (seq % 65536).to_bytes(2, "big") + (seq * 90 % 2**32).to_bytes(4, "big") + b"\0\0\0\1"
            writer.write(b"$\0" + (len(header) + len(payload)).to_bytes(2, "big") + header + payload)
            if seq % 64 == 0:
                await writer.drain()

    async def _spew(self, writer: asyncio.StreamWriter) -> None:
        for round_ in range(40):
            for _ in range(20):
                payload = self._random.randbytes(self._random.randint(0, 1500))
                if round_ % 2 and payload:
                    payload = bytes([0x80, 96]) + payload  # an RTP-looking header, garbage after
                channel = 0 if self._random.random() < 0.9 else self._random.randint(2, 255)
                writer.write(b"$" + bytes([channel]) + len(payload).to_bytes(2, "big") + payload)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(self._random.randbytes(4096))  # not even interleaved framing
        await writer.drain()


def test_unreachable_and_misbehaving_cameras_become_events_not_crashes(serve, small_clip: Path, tmp_path: Path):
    server = serve(small_clip, 1)
    run_s = 12.0
    fakes: dict[str, FakeCamera] = {}

    async def main() -> list[dict[str, Any]]:
        async with (
            FakeCamera("garbage") as garbage,
            FakeCamera("reject_udp") as reject_udp,
            FakeCamera("silent_udp") as silent_udp,
            FakeCamera("mute") as mute,
        ):
            fakes.update(garbage=garbage, reject_udp=reject_udp, silent_udp=silent_udp, mute=mute)
            config = _config(
                [
                    _camera("healthy", server.url(0)),
                    _camera("unreachable", f"rtsp://127.0.0.1:{_free_port()}/nothing"),
                    _camera("garbage", garbage.url()),
                    _camera("reject_udp", reject_udp.url(), "udp"),
                    _camera("silent_udp", silent_udp.url(), "udp"),
                    _camera("mute", mute.url()),
                ],
                tmp_path,
            )
            runtime = Runtime(config)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(run_s, stop.set)
            await runtime.run(stop)
        return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]

    lines = asyncio.run(main())

    # The healthy camera is not slowed by five broken ones.
    healthy = _of(lines, "healthy", "detections")
    assert len(healthy) >= 5 * (run_s - 6), len(healthy)
    assert _analysed_fps(healthy) == pytest.approx(5.0, rel=0.1)
    assert not _of(lines, "healthy", "disconnected")

    for camera in ("unreachable", "garbage", "reject_udp", "silent_udp", "mute"):
        assert len(_of(lines, camera, "disconnected")) >= 2, camera
        assert len(_of(lines, camera, "reconnecting")) >= 2, camera
        assert not _of(lines, camera, "detections"), camera
    assert "RTSPConnectionError" in _of(lines, "unreachable", "disconnected")[0]["reason"]
    assert "RTSPTimeoutError" in _of(lines, "mute", "disconnected")[0]["reason"]
    # Garbage on the interleaved channel: counted as malformed packets, then the session ends.
    assert sum(g.get("malformed_packets", 0) for g in _of(lines, "garbage", "gap")) > 0
    assert fakes["garbage"].connections >= 2

    # 461 to a UDP SETUP: the camera moves to TCP at once, and stays there.
    rejected = _of(lines, "reject_udp", "disconnected")[0]["reason"]
    assert "UnsupportedTransportError" in rejected, rejected
    assert _of(lines, "reject_udp", "reconnecting")[0]["transport"] == "tcp"
    assert [c["transport"] for c in _of(lines, "reject_udp", "connected")] == ["tcp"] * len(_of(lines, "reject_udp", "connected"))

    # UDP that plays but never delivers: falls back to TCP after the no-data timeout.
    silent = _of(lines, "silent_udp", "connected")
    assert silent[0]["transport"] == "udp" and silent[1]["transport"] == "tcp", silent
    assert _of(lines, "silent_udp", "disconnected")[0]["reason"] == "no UDP packets in 2 s"


class _BuggyRuntime(Runtime):
    """A runtime whose packet path raises once, on camera ``buggy``'s 30th access unit."""

    def __init__(self, config: config_module.Config) -> None:
        super().__init__(config)
        self.units = 0

    def access_unit(self, camera: str, unit: Any) -> None:
        if camera == "buggy":
            self.units += 1
            if self.units == 30:
                raise KeyError("injected")
        super().access_unit(camera, unit)


def test_quirky_cameras_and_our_own_bugs_stay_with_their_camera(serve, small_clip: Path, tmp_path: Path):
    """Replies that make aiortsp raise, quirks a camera really sends, and an exception in our
    packet path each affect only their own camera: the process runs on, the healthy camera
    keeps 5 fps, the buggy camera restarts its session and analyses again."""
    server = serve(small_clip, 2)
    run_s = 12.0

    async def main() -> tuple[list[dict[str, Any]], _BuggyRuntime]:
        async with FakeCamera("quirky") as quirky, FakeCamera("bad_ports") as bad_ports:
            config = _config(
                [
                    _camera("healthy", server.url(0)),
                    _camera("buggy", server.url(1)),
                    _camera("quirky", quirky.url()),
                    _camera("bad_ports", bad_ports.url(), "udp"),
                ],
                tmp_path,
            )
            runtime = _BuggyRuntime(config)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(run_s, stop.set)
            await runtime.run(stop)
        return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()], runtime

    lines, runtime = asyncio.run(main())

    healthy = _of(lines, "healthy", "detections")
    assert len(healthy) >= 5 * (run_s - 6), len(healthy)
    assert _analysed_fps(healthy) == pytest.approx(5.0, rel=0.1)
    assert not _of(lines, "healthy", "disconnected")

    # Duplicated Public and Session headers and a timeout that is no number: it just plays.
    assert len(_of(lines, "quirky", "connected")) == 1
    assert not _of(lines, "quirky", "disconnected")

    # aiortsp raises ValueError on the Transport header: that camera's failure, again and again.
    reasons = [e["reason"] for e in _of(lines, "bad_ports", "disconnected")]
    assert len(reasons) >= 2 and reasons[0].startswith("ValueError"), reasons
    assert len(_of(lines, "bad_ports", "reconnecting")) >= 2

    # Our own bug: reported as ours, counted, and the camera comes back by itself.
    assert runtime.internal_errors() == {"healthy": 0, "buggy": 1, "quirky": 0, "bad_ports": 0}
    (disconnected,) = _of(lines, "buggy", "disconnected")
    assert disconnected["reason"].startswith("internal error: KeyError: 'injected'"), disconnected
    after = [d for d in _of(lines, "buggy", "detections") if _time(d) > _time(disconnected)]
    assert len(after) >= 10, "the camera did not resume after the internal error"
    assert len(_of(lines, "buggy", "connected")) == 2


def _rss_mb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def test_flooding_peers_are_cut_off_and_cost_the_others_nothing(serve, small_clip: Path, tmp_path: Path):
    """An endless header line at several MB/s and an RTP flood over the camera's budget: both
    disconnected with the reason, memory flat, the healthy camera at 5 fps."""
    server = serve(small_clip, 1)
    run_s = 12.0
    rss: list[float] = []

    async def main() -> list[dict[str, Any]]:
        async with FakeCamera("endless_header") as endless, FakeCamera("flood") as flood:
            config = _config(
                [
                    _camera("healthy", server.url(0)),
                    _camera("endless", endless.url()),
                    _camera("flood", flood.url(), max_receive_mbps=4.0),
                ],
                tmp_path,
            )
            runtime = Runtime(config)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(run_s, stop.set)
            running = asyncio.create_task(runtime.run(stop))
            while not running.done():
                rss.append(_rss_mb())
                await asyncio.sleep(0.25)
            await running
        return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()]

    lines = asyncio.run(main())
    healthy = _of(lines, "healthy", "detections")
    assert len(healthy) >= 5 * (run_s - 6) and _analysed_fps(healthy) == pytest.approx(5.0, rel=0.1), len(healthy)
    assert not _of(lines, "healthy", "disconnected")
    endless = [e["reason"] for e in _of(lines, "endless", "disconnected")]
    assert endless and all("RTSP message headers longer than 64 KiB" in r for r in endless), endless
    flood = [e["reason"] for e in _of(lines, "flood", "disconnected")]
    assert flood and "receiving over 4 Mbit/s" in flood[0], flood
    settled = rss[len(rss) // 4 :]
    assert max(settled) - min(settled) < 100, f"RSS grew from {min(settled):.0f} to {max(settled):.0f} MB"


@contextlib.contextmanager
def _fakes_in_a_thread(*modes: str):
    """Fake cameras served from a thread of their own (for a dalistream process to reach)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fakes = [FakeCamera(mode) for mode in modes]
    for fake in fakes:
        asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(5)
    try:
        yield fakes
    finally:
        for fake in fakes:
            asyncio.run_coroutine_threadsafe(fake.__aexit__(None, None, None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_logs_are_ours_structured_escaped_and_short(model_path: Path, tmp_path: Path):
    """Hostile replies (escape sequences, 100 KB lines, garbage that used to print tracebacks)
    never reach stderr raw: every line is our JSON log, short, without control characters."""
    with _fakes_in_a_thread("hostile_text", "garbage") as (hostile, garbage):
        site = tmp_path / "site.toml"
        site.write_text(
            f'[pipeline]\ndevice = "cpu"\n[model]\nonnx = "{MODEL}"\n[output]\ndir = "{tmp_path / "out"}"\n'
            + "".join(f'[[camera]]\nid = "{cam}"\nurl = "{url}"\nbackoff_cap_s = 1.0\n'
                      for cam, url in (("hostile", hostile.url()), ("garbage", garbage.url())))
        )
        done = subprocess.run(
            [sys.executable, "-m", "dalistream", "--log-json", "--log-level", "debug", "--config", str(site), "--duration", "6"],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) > 10
    for line in lines:
        record = json.loads(line)  # raises on anything that is not our JSON log
        assert len(line) < 4096, line[:200]
        assert "Traceback" not in line and "\x1b" not in line and "\\u001b" not in line and "\x07" not in line
        assert "event" in record and "level" in record
    assert any(r.get("camera") == "hostile" and r.get("event") == "disconnected" for r in map(json.loads, lines))


def test_auto_transport_moves_to_udp_for_a_camera_that_refuses_tcp():
    """transport = "auto" (the default) against a UDP-only server: TCP first, then UDP on 461,
    and the session plays there (its packets arrive: no fallback back to TCP)."""
    sink = _RecordingSink()
    stages = Stages()

    async def main() -> CameraIngest:
        async with FakeCamera("udp_only") as fake:
            camera = CameraConfig(id="cam", url=fake.url(), **FAST_CAMERA)
            assert camera.transport == "auto"
            ingest = CameraIngest(camera, sink, stages)
            task = asyncio.create_task(ingest.run())
            await asyncio.sleep(4.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return ingest

    ingest = asyncio.run(main())
    names = [e for e, _ in sink.events]
    assert names == ["disconnected", "reconnecting", "connected"], sink.events
    assert "UnsupportedTransportError" in sink.events[0][1]["reason"]
    assert sink.events[1][1]["transport"] == "udp" and sink.events[2][1]["transport"] == "udp"
    # Receive costs are handed over in bunches of packets, the last bunch when the session ends.
    assert stages.snapshot()["receive+depacketize"].items == ingest.packets > 0


class _RecordingSink:
    """An IngestSink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.units = 0

    def stream_started(self, camera: str, fmt: Any) -> None:
        pass

    def access_unit(self, camera: str, unit: Any) -> None:
        self.units += 1

    def event(self, camera: str, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def lost(self, camera: str, **counts: int) -> None:
        pass

    def internal_error(self, camera: str, error: Exception) -> None:
        self.events.append(("internal_error", {"error": error}))


def test_keepalive_at_half_the_session_timeout_and_late_joiner_waits_for_idr():
    """A server announcing a 2 s session timeout gets a keep-alive about every second; a stream
    of P slices without an IDR yields no access unit (and no gap: nothing was lost)."""
    sink = _RecordingSink()

    async def main() -> FakeCamera:
        async with FakeCamera("keepalive") as fake:
            camera = CameraConfig(**_camera("cam", fake.url()))
            task = asyncio.create_task(CameraIngest(camera, sink, Stages()).run())
            await asyncio.sleep(4.5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return fake

    fake = asyncio.run(main())
    assert [e for e, _ in sink.events] == ["connected"], sink.events
    play = next(t for t, m in fake.methods if m == "PLAY")
    keepalives = [t - play for t, m in fake.methods if m == "GET_PARAMETER"]
    assert 3 <= len(keepalives) <= 5, keepalives
    assert 0.7 <= keepalives[0] <= 1.6, keepalives
    assert sink.units == 0
