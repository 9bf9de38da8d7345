"""The DALI letterbox graph against a NumPy reference, and its zero-copy output."""

import av
import numpy as np
import pytest

from dalistream.decode.pyav import PyAvDecoder
from dalistream.geometry import Letterbox
from dalistream.models.retinaface import RETINAFACE_MEAN_BGR, RETINAFACE_STD
from dalistream.engine.preprocess import Preprocessor


def reference(frames, width, height):
    out = np.zeros((len(frames), 3, height, width), np.float32)
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        out[i, :, :h, :w] = (frame.astype(np.float32) - np.array(RETINAFACE_MEAN_BGR, np.float32)).transpose(2, 0, 1)
    return out


def test_matches_numpy_for_mixed_sizes():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(540, 960, 3), (544, 408, 3), (360, 640, 3)]]
    preprocess = Preprocessor(960, 544, max_batch=4, mean=RETINAFACE_MEAN_BGR, std=RETINAFACE_STD)
    out = preprocess(frames)
    assert out.shape == (3, 3, 544, 960) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, reference(frames, 960, 544))


def test_output_is_a_view_of_dali_memory():
    preprocess = Preprocessor(64, 64, max_batch=2, mean=RETINAFACE_MEAN_BGR, std=RETINAFACE_STD)
    first = preprocess([np.full((64, 64, 3), 200, np.uint8)])
    assert not first.flags["OWNDATA"] and first.base is not None  # DALI's buffer, by DLPack: no copy


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "batch of 0"),
        ([np.zeros((80, 64, 3), np.uint8)], "exceeds the input"),
        ([np.zeros((64, 64), np.uint8)], "HWC uint8"),
        ([np.zeros((64, 64, 3), np.float32)], "HWC uint8"),
        ([np.zeros((8, 8, 3), np.uint8)] * 3, "batch of 3"),
    ],
)
def test_rejects_bad_batches(frames, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(64, 64, max_batch=2, mean=RETINAFACE_MEAN_BGR, std=RETINAFACE_STD)(frames)


def test_scaling_in_the_graph_matches_the_decoders_scaling():
    """The GPU path scales in the graph (fn.resize to each letterbox); the same graph on the CPU
    must land each frame where swscale's does, at nearly the same pixels."""
    rng = np.random.default_rng(1)
    smooth = [np.kron(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
              for h, w in [(1080, 1920), (480, 640), (1504, 1000)]]
    letterboxes = [Letterbox.fit(f.shape[1], f.shape[0], 320, 192) for f in smooth]
    scaling = Preprocessor(320, 192, max_batch=4, mean=(0, 0, 0), std=(1, 1, 1), scale=True)
    scaled = np.array(scaling(smooth, letterboxes))
    swscaled = [PyAvDecoder.convert(av.VideoFrame.from_ndarray(f, format="rgb24"), lb, "rgb24") for f, lb in zip(smooth, letterboxes)]
    plain = Preprocessor(320, 192, max_batch=4, mean=(0, 0, 0), std=(1, 1, 1))(swscaled)
    for image, lb in enumerate(letterboxes):
        inside = (slice(None), slice(0, lb.content_height), slice(0, lb.content_width))
        assert np.abs(scaled[image][inside] - plain[image][inside]).mean() < 4.0
        outside = scaled[image][:, lb.content_height:, :], scaled[image][:, :, lb.content_width:]
        assert all(np.all(part == 0) for part in outside)
    with pytest.raises(ValueError, match="one letterbox per frame"):
        scaling(smooth)


def test_frames_to_scale_go_in_as_one_dense_batch_kept_from_call_to_call():
    """DALI copies a list of separate device arrays before it runs: frames to scale are
    copied into one dense batch instead (each at the top-left of its sample, the graph reading
    only its own extent), a buffer kept while the frames' size holds."""
    rng = np.random.default_rng(2)
    scaling = Preprocessor(96, 64, max_batch=3, mean=(0, 0, 0), std=(1, 1, 1), scale=True)
    big, small = rng.integers(0, 256, (64, 96, 3), np.uint8), np.full((32, 48, 3), 77, np.uint8)
    boxes = [Letterbox.fit(96, 64, 96, 64), Letterbox.fit(48, 32, 96, 64)]
    out = np.array(scaling([big, small], boxes))
    batch = scaling._batch
    assert batch.shape == (3, 64, 96, 3) and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out[0], big.transpose(2, 0, 1).astype(np.float32))  # same size: no scaling
    assert np.all(out[1] == 77)  # the small frame's own pixels scaled up, not the batch's padding
    scaling([small, big], boxes[::-1])
    assert scaling._batch is batch  # the same size of batch: the same buffer
    scaling([small], boxes[1:])
    assert scaling._batch is not batch and scaling._batch.shape == (3, 32, 48, 3)
