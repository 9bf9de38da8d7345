"""The runtime's face stage on real parts (a frame's picture, the crop writer, files): records
get their tracks, crops land on the disk at full resolution, and a picture that cannot be cut
is said once and loses nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog
from PIL import Image

from dalistream.config import Config, from_mapping
from dalistream.decode import ArrayFullFrame, CropError, SampledFrame
from dalistream.geometry import Letterbox
from dalistream.metrics import Stages
from dalistream.pipeline.faces import FaceTracking

EPOCH = 1_790_000_000.0


def config(out: Path, **faces) -> Config:
    return from_mapping({"output": {"dir": str(out)}, "faces": faces, "camera": [{"id": "cam0", "url": "file:x.h264"}]})


def picture() -> np.ndarray:
    """A 1920x1080 BGR frame with texture (so faces have a sharpness)."""
    return np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)


def record(seq: int, boxes: list[list[float]]) -> dict:
    faces = [{"box": box, "score": 0.95, "landmarks": [[box[0] + 0.3 * (box[2] - box[0]), box[1] + 40],
                                                       [box[0] + 0.7 * (box[2] - box[0]), box[1] + 40],
                                                       [box[0] + 0.5 * (box[2] - box[0]), box[1] + 60],
                                                       [box[0] + 0.35 * (box[2] - box[0]), box[1] + 90],
                                                       [box[0] + 0.65 * (box[2] - box[0]), box[1] + 90]]} for box in boxes]
    return {"camera": "cam0", "seq": seq, "width": 1920, "height": 1080, "faces": faces}


def frame(seq: int, image: np.ndarray, full) -> SampledFrame:
    small = image[::2, ::2]  # as analysed: the letterbox content at half size
    return SampledFrame("cam0", seq, seq * 0.2, small, Letterbox.fit(1920, 1080, 960, 544), seq * 0.2, EPOCH + seq * 0.2, full)


class Refusing:
    """A kept frame whose picture cannot be cut (what FullFrame.crop says with CropError)."""

    width, height = 1920, 1080

    def crop(self, box):
        raise CropError("cannot cut a crop from a p010le frame")


def test_tracks_in_records_and_the_best_crop_on_the_disk_at_full_resolution(tmp_path: Path):
    events: list = []
    stage = FaceTracking(config(tmp_path), Stages(), events.extend)
    stage.add("cam0", first_track=5)
    stage.writer.start()
    image = picture()
    out = [record(i, [[600.0 + 10 * i, 300.0, 720.0, 450.0]]) for i in range(3)]
    produced = [stage.track(frame(i, image, ArrayFullFrame(image, "bgr24")), rec) for i, rec in enumerate(out)]
    assert [rec["faces"][0]["track"] for rec in out] == [5, 5, 5]
    assert [e["event"] for e in produced[0]] == ["face_appeared"] and produced[1:] == [[], []]
    (left,) = stage.end("cam0", "service_stopped")
    stage.writer.close()
    crop = Image.open(tmp_path / left["crop"])
    assert crop.size == (180, 226)  # the 120x150 box and a quarter more on each side, in 1080p pixels
    assert events == [] and stage.next_track("cam0") == 6


def test_a_picture_that_cannot_be_cut_is_said_once_and_tracking_goes_on(tmp_path: Path):
    stage = FaceTracking(config(tmp_path), Stages(), [].extend)
    stage.add("cam0")
    image = picture()
    out = [record(i, [[600.0, 300.0, 720.0, 450.0], [1200.0, 300.0, 1320.0, 450.0]]) for i in range(4)]
    with structlog.testing.capture_logs() as logs:
        for i, rec in enumerate(out):
            stage.track(frame(i, image, Refusing()), rec)
    assert [[face["track"] for face in rec["faces"]] for rec in out] == [[1, 2]] * 4
    left = stage.end("cam0", "camera_stopped")
    assert [e["crop"] for e in left] == [None, None]
    assert [entry["event"] for entry in logs].count("face crop failed; tracks go on without that picture") == 1


def test_crops_off_keeps_no_picture_and_scores_nothing(tmp_path: Path):
    stage = FaceTracking(config(tmp_path, crops=False), Stages(), [].extend)
    stage.add("cam0")
    image = picture()
    rec = record(0, [[600.0, 300.0, 720.0, 450.0]])
    stage.track(frame(0, image, None), rec)
    assert rec["faces"][0]["track"] == 1 and stage.writer is None
    assert stage.end("cam0", "camera_stopped")[0]["crop"] is None
