"""What a cluster worker hands the coordinator crosses Ray as host data."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest

import fake_gpu
from dalistream.cluster.worker import Worker
from dalistream.geometry import Letterbox
from dalistream.pipeline.status import AnalysedFrame


def test_a_snapshot_leaves_the_worker_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU worker's last frame is a CuPy array: pickled by Ray it would need CuPy and a GPU on
    the coordinator to unpickle. The worker copies it to the host (one transfer) first."""
    cupy = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, cupy)
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    frame = AnalysedFrame(cupy.asarray(image), "bgr24", Letterbox.fit(3, 2, 3, 2), {"seq": 4})

    async def latest_frame(camera: str) -> AnalysedFrame | None:
        return frame if camera == "cam" else None

    worker = Worker.__new__(Worker)  # the actor class itself, without Ray or a runtime behind it
    worker._runtime = types.SimpleNamespace(latest_frame=latest_frame)
    sent = asyncio.run(worker.latest_frame("cam"))
    assert type(sent.image) is np.ndarray and np.array_equal(sent.image, image)
    assert sent.record == {"seq": 4} and fake_gpu.device_of(cupy).round_trips == ["get"]
    assert asyncio.run(worker.latest_frame("other")) is None


def test_a_worker_publishes_under_its_own_client_id() -> None:
    """Two MQTT clients with one id knock each other off the broker: each worker's id is its own."""
    from dalistream.cluster.worker import worker_config
    from dalistream.config import from_mapping

    camera = {"id": "cam0", "url": "rtsp://127.0.0.1/x"}
    named = from_mapping({"mqtt": {"client_id": "site-a"}, "cluster": {}, "camera": [camera]})
    assert worker_config(named, "w2").mqtt.client_id == "site-a-w2"
    anonymous = from_mapping({"mqtt": {}, "cluster": {}, "camera": [camera]})
    assert worker_config(anonymous, "w2").mqtt.client_id == ""  # random per connection, unique anyway


def test_gathered_records_are_published_by_the_coordinator_alone() -> None:
    from dalistream.cluster.worker import worker_config
    from dalistream.config import from_mapping

    gathered = from_mapping({"mqtt": {"client_id": "site-a"}, "cluster": {"gather_output": True},
                             "camera": [{"id": "cam0", "url": "rtsp://127.0.0.1/x"}]})
    assert worker_config(gathered, "w1").mqtt is None
