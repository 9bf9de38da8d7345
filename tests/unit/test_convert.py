"""PyAvDecoder.convert: channel order by parameter, and rows DALI accepts at any content width;
PyAvFullFrame.crop: a face crop at full resolution, the same pixels as converting the whole frame."""

from __future__ import annotations

import av
import numpy as np
import pytest

from dalistream.decode import PyAvDecoder
from dalistream.decode.pyav import PyAvFullFrame
from dalistream.decode.source import ArrayFullFrame
import fake_gpu
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


def _decoded(width: int, height: int, pixel_format: str = "yuv420p") -> av.VideoFrame:
    """A decoded-looking frame: a colourful pattern in ``pixel_format``, limited range (as cameras send)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([(x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256]).astype(np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pixel_format)


@pytest.mark.parametrize("box", [(600, 200, 1000, 700), (601, 201, 999, 699), (0, 0, 1, 1), (1800, 1000, 1920, 1080)])
def test_a_crop_of_the_full_frame_is_its_part_of_the_whole_conversion(box) -> None:
    """Cut from the YUV planes and converted alone, a crop has the pixels converting the whole
    frame gives there (corners moved out to even pixels for 4:2:0)."""
    frame = _decoded(1920, 1080)
    whole = frame.to_ndarray(format="rgb24")
    pixels = PyAvFullFrame(frame).crop(box)
    x1, y1 = box[0] & ~1, box[1] & ~1
    height, width = pixels.shape[:2]
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert x1 + width >= box[2] and y1 + height >= box[3] and width % 2 == 0 and height % 2 == 0
    np.testing.assert_array_equal(pixels, whole[y1 : y1 + height, x1 : x1 + width])


def test_a_crop_of_another_pixel_layout_converts_the_frame() -> None:
    frame = _decoded(640, 360, "yuv444p")
    pixels = PyAvFullFrame(frame).crop((101, 51, 301, 251))
    np.testing.assert_array_equal(pixels, frame.to_ndarray(format="rgb24")[51:251, 101:301])


@pytest.mark.parametrize("pixel_format", ["bgr24", "rgb24"])
def test_a_crop_of_a_device_picture_copies_only_the_crop_to_the_host_in_rgb(pixel_format, monkeypatch) -> None:
    """ArrayFullFrame, for GPU sources whose frames keep the stream's size: sliced on the device."""
    cupy = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, cupy)
    rgb = np.zeros((1080, 1920, 3), np.uint8)
    rgb[..., 0], rgb[500:, :, 1] = 220, 90
    picture = cupy.asarray((rgb[..., ::-1] if pixel_format == "bgr24" else rgb).copy())
    pixels = ArrayFullFrame(picture, pixel_format).crop((100, 450, 300, 600))
    assert fake_gpu.device_of(cupy).round_trips == ["get"]  # the crop alone, once
    assert type(pixels) is np.ndarray and pixels.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(pixels, rgb[450:600, 100:300])


def test_skipping_the_loop_filter_leaves_key_frames_alone_and_changes_the_rest(sample_clip) -> None:
    """``pipeline.skip_loop_filter``: the decoder skips deblocking on all but key frames."""
    from model_inputs import clip_units

    codec, units = clip_units(sample_clip, 0.4)
    assert units[0].key and not any(unit.key for unit in units[1:])
    plain, skipping = PyAvDecoder(codec), PyAvDecoder(codec, skip_loop_filter=True)
    pictures = [[frame.to_ndarray(format="gray") for tag, unit in enumerate(units) for frame in decoder.decode(unit.data, tag)]
                for decoder in (plain, skipping)]
    assert len(pictures[0]) == len(pictures[1]) == len(units)
    assert np.array_equal(pictures[0][0], pictures[1][0])  # the key frame: deblocked either way
    differences = [np.abs(a.astype(int) - b).mean() for a, b in zip(pictures[0][1:], pictures[1][1:])]
    assert all(0 < difference < 3 for difference in differences)  # the others: close, not the same
