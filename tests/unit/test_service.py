"""The operations surface's pure parts: camera state from events, the analysed rate, snapshots,
the [http] table, the camera state file."""

from __future__ import annotations

import asyncio
import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dalistream import config as config_module
from dalistream.config import ConfigError, HttpConfig
from dalistream.geometry import Letterbox
from dalistream.pipeline.status import AnalysedFrame, CameraStatus
from dalistream.service.control import camera_table, state_file, with_persisted_cameras
from dalistream.service.snapshots import Snapshots, render


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_camera_state_follows_its_events():
    clock = Clock()
    status = CameraStatus(clock)
    assert status.view().state == "connecting" and status.view().last_error is None
    status.event("connected", {"transport": "tcp", "codec": "H264"}, "t0")
    assert (status.view().state, status.view().transport, status.view().codec) == ("streaming", "tcp", "H264")
    clock.now += 5
    status.event("disconnected", {"reason": "closed by server"}, "t1")
    status.event("reconnecting", {"attempt": 1, "delay_s": 0.5, "transport": "tcp"}, "t1")
    view = status.view()
    assert (view.state, view.last_error, view.last_error_at, view.state_age_s) == ("backing_off", "closed by server", "t1", 0.0)
    status.event("connected", {"codec": "H265", "file": "clip.h265"}, "t2")
    assert (status.view().state, status.view().transport, status.view().last_error) == ("streaming", "file", "closed by server")
    status.event("end_of_file", {"plays": 1, "looping": True}, "t3")
    assert status.view().state == "streaming"
    status.event("end_of_file", {"plays": 2, "looping": False}, "t4")
    assert status.view().state == "stopped"


def frame(image: np.ndarray, pixel_format: str = "bgr24", faces: list | None = None) -> AnalysedFrame:
    height, width = image.shape[:2]
    letterbox = Letterbox.fit(width * 2, height * 2, width, height + 4)  # source twice the analysed size
    return AnalysedFrame(image, pixel_format, letterbox, {"faces": faces or []})


def test_analysed_fps_is_the_recent_rate_and_zero_when_stalled():
    clock = Clock()
    status = CameraStatus(clock)
    status.event("connected", {"transport": "tcp"}, "t0")
    clock.now += 2.0  # the first key frame came late: the rate is not diluted by it
    still = frame(np.zeros((4, 4, 3), np.uint8))
    for _ in range(16):
        status.analysed(still)
        clock.now += 0.2
    assert status.view().analysed_fps == pytest.approx(5.0)
    for _ in range(100):  # a long run: only the last 10 s count
        status.analysed(still)
        clock.now += 0.5
    assert status.view().analysed_fps == pytest.approx(2.0)
    clock.now += 3.0
    assert status.view().analysed_fps == 0.0
    assert status.view().last_frame_age_s is None  # no access unit was ever told
    status.unit()
    clock.now += 0.25
    assert status.view().last_frame_age_s == pytest.approx(0.25)


def test_snapshot_draws_boxes_where_the_faces_are_in_the_right_colours():
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[..., 0] = 255  # blue, in BGR
    face = {"box": [40.0, 20.0, 100.0, 80.0], "landmarks": [[60.0, 40.0]] * 5}  # source pixels (2x)
    image = np.asarray(Image.open(BytesIO(render(frame(bgr, faces=[face])))).convert("RGB")).astype(int)
    assert image.shape == (60, 80, 3)
    assert tuple(image[5, 5]) == pytest.approx((0, 0, 255), abs=12)  # blue stays blue
    assert image[10, 30, 1] > 200 and image[10, 30, 2] < 90  # the box's top edge, at y = 20 / 2
    assert image[25, 35, 2] > 200 and image[25, 35, 1] < 90  # inside the box: background
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[..., 0] = 255  # red, in RGB
    assert tuple(np.asarray(Image.open(BytesIO(render(frame(rgb, "rgb24")))).convert("RGB"))[5, 5]) == pytest.approx((255, 0, 0), abs=12)


def test_snapshots_are_made_at_most_fps_times_a_second():
    clock = Clock()
    snapshots = Snapshots(fps=2.0, clock=clock)
    first, second = frame(np.zeros((8, 8, 3), np.uint8)), frame(np.full((8, 8, 3), 255, np.uint8))

    async def scenario() -> list[bytes]:
        made = [await snapshots.jpeg("cam0", first)]
        clock.now += 0.1
        made.append(await snapshots.jpeg("cam0", second))  # too soon: the last one again
        clock.now += 0.5
        made.append(await snapshots.jpeg("cam0", second))
        snapshots.forget("cam0")
        made.append(await snapshots.jpeg("cam0", first))
        return made

    made = asyncio.run(scenario())
    assert made[0] == made[1] != made[2] and made[3] == made[0]


@pytest.mark.parametrize(
    ("listen", "address"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9000", ("::1", 9000))],
)
def test_http_listen_addresses(listen: str, address: tuple[str, int]):
    config = HttpConfig(listen=listen)
    config.validate("http")
    assert config.address == address


@pytest.mark.parametrize("listen", ["8080", ":8080", "host:port", "host:70000", "[]:80"])
def test_http_listen_refuses_what_is_not_host_port(listen: str):
    with pytest.raises(ConfigError, match=r"^http\.listen: expected host:port"):
        HttpConfig(listen=listen).validate("http")


def test_http_token_comes_from_the_environment(monkeypatch):
    assert HttpConfig().token() is None
    monkeypatch.delenv("DALISTREAM_T", raising=False)
    with pytest.raises(ConfigError, match="DALISTREAM_T is not set"):
        HttpConfig(token_env="DALISTREAM_T").token()
    monkeypatch.setenv("DALISTREAM_T", "abc")
    assert HttpConfig(token_env="DALISTREAM_T").token() == "abc"
    with pytest.raises(ConfigError, match="token_env: must be an environment variable name"):
        HttpConfig(token_env="not a name").validate("http")


def test_state_file_round_trips_cameras(tmp_path: Path):
    site = tmp_path / "site.toml"
    clip = tmp_path / "clip.h264"
    site.write_text(
        '[[camera]]\nid = "a"\nurl = "rtsp://u:p@10.0.0.1/x"\ntransport = "udp"\nbackoff_cap_s = 5.0\n'
        '[[camera]]\nid = "b"\nurl = "file:clip.h264"\nloop = true\n'
    )
    config = config_module.load(site)
    path = state_file(site)
    assert path == tmp_path / "site.cameras.json"
    path.write_text(json.dumps({"camera": [camera_table(camera) for camera in reversed(config.camera)]}))
    assert camera_table(config.camera[0]) == {"id": "a", "url": "rtsp://u:p@10.0.0.1/x", "transport": "udp", "backoff_cap_s": 5.0}
    assert with_persisted_cameras(config, path).camera == tuple(reversed(config.camera))
    assert config.camera[1].url == clip.as_uri()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a camera state file"),
        ('{"camera": {}}', "camera: expected an array"),
        ('{"camera": [{"id": "a"}]}', r"camera\[0\]\.url: required key missing"),
        ('{"camera": [{"id": "a", "url": "rtsp://h/x"}, {"id": "a", "url": "rtsp://h/y"}]}', "duplicate id"),
    ],
)
def test_a_broken_state_file_is_refused_by_name(tmp_path: Path, content: str, message: str):
    site = tmp_path / "site.toml"
    site.write_text('[[camera]]\nid = "a"\nurl = "rtsp://h/x"\n')
    state_file(site).write_text(content)
    with pytest.raises(ConfigError, match=message):
        with_persisted_cameras(config_module.load(site), state_file(site))
