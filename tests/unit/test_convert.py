"""PyAvDecoder.convert: channel order by parameter, and rows DALI accepts at any content width."""

from __future__ import annotations

import av
import numpy as np
import pytest

from dalistream.decode import PyAvDecoder
from dalistream.geometry import Letterbox
from dalistream.engine.preprocess import Preprocessor


@pytest.mark.parametrize("pixel_format", ["bgr24", "rgb24"])
def test_convert_orders_channels_and_packs_rows(pixel_format: str) -> None:
    rgb = np.zeros((1388, 1024, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    letterbox = Letterbox.fit(1024, 1388, 640, 640)  # 472 px wide: swscale pads such rows
    image = PyAvDecoder.convert(frame, letterbox, pixel_format)
    assert image.shape == (640, 472, 3) and image.flags["C_CONTIGUOUS"]
    red = 0 if pixel_format == "rgb24" else 2
    assert abs(int(image[320, 236, red]) - 200) <= 2 and image[320, 236, 2 - red] <= 2
    tensor = Preprocessor(640, 640, 1, mean=(0, 0, 0), std=(1, 1, 1))([image])
    np.testing.assert_array_equal(tensor[0, :, :, :472], image.transpose(2, 0, 1).astype(np.float32))
