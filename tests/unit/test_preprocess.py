"""The DALI letterbox graph against a NumPy reference, and its zero-copy output."""

import numpy as np
import pytest

from dalistream.models.retinaface import RETINAFACE_MEAN_BGR, RETINAFACE_STD
from dalistream.pipeline.preprocess import Preprocessor


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
    assert not first.flags["OWNDATA"]
    address = first.__array_interface__["data"][0]
    second = preprocess([np.full((64, 64, 3), 10, np.uint8)])
    assert second.__array_interface__["data"][0] == address  # the same buffer, reused


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
