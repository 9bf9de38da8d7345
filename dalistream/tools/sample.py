"""Generate the license-clean 1080p25 H.264 (or H.265) test clip and its face ground truth.

The clip is a smooth synthetic background with head-and-shoulders sprites cut from
scikit-image's ``astronaut()`` (NASA portrait of Eileen Collins, public domain), each moving
on a Lissajous path inside its own lane so sprites never overlap. Motion and background are
periodic over the clip length, so a server looping the file shows no jump at the seam.

Outputs, next to each other, in ``media/`` of the checkout or of the cache directory an installed
package uses (``dalistream.tools.assets``)::

    media/sample_1080p25.h264     Annex-B elementary stream (IDR + SPS/PPS every GOP, no B-frames)
    media/sample_1080p25.gt.json  {"width", "height", "fps", "frames", "gop", "params",
                                   "faces": [[[x1, y1, x2, y2], ...] per frame]}

With ``--codec h265`` the same frames are encoded by libx265 (IDR + VPS/SPS/PPS every GOP, no
B-frames) to ``media/sample_1080p25.h265``, with the same faces in ``media/sample_1080p25.h265.gt.json``.

With ``--scene tracks`` the clip is for measuring a face tracker: sprites walk straight between
waypoints (``WALKERS``) over the same background, enter and leave the frame, two pairs cross (one
sprite passing in front of the other) and one leaves the frame briefly and comes back. It goes to
``media/tracks_1080p25.h264`` with ``media/tracks_1080p25.gt.json``, whose ``faces`` per frame hold
only the faces at least :data:`VISIBLE_SHARE` visible (inside the frame, not covered by a sprite in
front), with their identities in ``ids`` (the walker's number, from 1), and the faces less visible
than that in ``ignored`` and ``ignored_ids`` (neither a miss when not found nor a false detection
when found).

Ground-truth boxes are in frame pixels, continuous coordinates (a pixel ``i`` spans
``[i, i + 1)``), one box per sprite in ``SPRITES`` order. ``params`` is a hash of every
generator parameter; a rerun with matching outputs does nothing.

Usage (needs scikit-image, the ``media`` extra)::

    python -m dalistream.tools.sample [--out media/sample_1080p25.h264] [--force]
    python -m dalistream.tools.sample --codec h265 [--out media/sample_1080p25.h265] [--force]
    python -m dalistream.tools.sample --scene tracks [--out media/tracks_1080p25.h264] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from skimage import data, transform

from dalistream.tools.assets import sample_clip, tracks_clip

GENERATOR_VERSION = 1  # bump when a code change alters the pixels or the boxes
WIDTH = 1920
HEIGHT = 1080
FPS = 25
FRAMES = 500  # 20 s
GOP = 50  # frames between IDRs
BITRATE = 4_000_000  # bit/s, also the VBV max rate
VBV_BUFFER = 4_000_000  # bit, one second at BITRATE
X264_PRESET = "veryfast"
X264_PROFILE = "high"
# One encoder thread: one slice per frame and a bit-exact repeatable stream. (PyAV's default
# slice threading cuts one slice per core; x264 with VBV and more than one thread of either
# kind gives a slightly different stream on every run.)
X264_THREADS = 1
X265_PRESET = "ultrafast"
# libx265 with one frame thread and no worker pool is bit-exact from run to run, like x264 above.
X265_POOLS = "none"
X265_FRAME_THREADS = 1
CODECS = ("h264", "h265")
SCENES = ("lanes", "tracks")

# Face box of Eileen Collins in ``skimage.data.astronaut()`` (512x512), (x1, y1, x2, y2) in
# continuous source pixels. Determined once by running engines/retinaface_mnet025.onnx on the
# full image (BGR, mean 104/117/123, priors 8/16/32 with min sizes 16-512, variances 0.1/0.2):
# the top detection (score 0.9995) was (177.9, 56.8, 273.1, 177.2), with its ten best-scoring
# neighbours within 3 px. Rounded, drawn on the image and checked by eye: hairline/fringe to
# chin, cheek edge to cheek edge just inside the ears, as a WIDER FACE annotator would draw it.
ASTRONAUT_FACE_BOX = (178.0, 57.0, 273.0, 177.0)
# Head-and-shoulders crop of the astronaut image that every sprite is scaled from, (x1, y1, x2, y2).
# Kept tight below the chin: with more of the suit's neck ring in the crop, RetinaFace scores the
# ring as a face (up to 0.8) at the largest sprite scale, which would be a detection without a box.
HEAD_CROP = (125, 15, 325, 220)
SPRITE_FEATHER_PX = 12  # width of the soft alpha ramp at the sprite border, in crop pixels


@dataclass(frozen=True, slots=True)
class SpriteSpec:
    """One astronaut sprite: its size, lane and Lissajous motion."""

    face_height_px: float
    """Height of the face box in the 1080p frame; sets the sprite scale."""
    lane: tuple[int, int, int, int]
    """(x1, y1, x2, y2) frame region the whole sprite stays inside; lanes do not overlap."""
    cycles_x: int
    """Horizontal oscillations per clip; whole numbers keep the loop seamless."""
    cycles_y: int
    """Vertical oscillations per clip."""
    phase_x: float
    """Horizontal phase, radians."""
    phase_y: float
    """Vertical phase, radians."""
    mirrored: bool = False
    """Flip the sprite left-right."""


SPRITES = (
    SpriteSpec(350, (0, 0, 760, 1080), cycles_x=1, cycles_y=2, phase_x=0.0, phase_y=0.5),
    SpriteSpec(220, (760, 0, 1300, 560), cycles_x=2, cycles_y=3, phase_x=1.0, phase_y=0.0),
    SpriteSpec(140, (1300, 0, 1920, 560), cycles_x=3, cycles_y=2, phase_x=2.0, phase_y=1.5, mirrored=True),
    SpriteSpec(95, (760, 560, 1340, 1080), cycles_x=2, cycles_y=5, phase_x=0.3, phase_y=2.2),
    SpriteSpec(70, (1340, 560, 1920, 1080), cycles_x=5, cycles_y=4, phase_x=4.0, phase_y=0.7),
)


@dataclass(frozen=True, slots=True)
class WalkerSpec:
    """One sprite of the ``tracks`` scene, walking straight from waypoint to waypoint."""

    face_height_px: float
    """Height of the face box in the 1080p frame; sets the sprite scale."""
    waypoints: tuple[tuple[int, float, float], ...]
    """(frame, x, y) of the face box centre, frames ascending; absent before the first and after the last."""
    mirrored: bool = False
    """Flip the sprite left-right."""


# The ``tracks`` scene, drawn in this order (a later walker passes in front of an earlier one).
# 1 and 2 cross in opposite directions at frame 90, 2 in front and 0.55 face heights lower; 3 and 4
# cross in an X at frame 260, where 4 covers 3 whole; 5 leaves the frame at the right (frame 22)
# and at the bottom (frame 208) and comes back each time; 6, a smaller face, passes in front of 5
# at frame 458. No face is less than VISIBLE_SHARE visible for longer than 0.76 s on end.
WALKERS = (
    WalkerSpec(150, ((0, -160.0, 330.0), (180, 2080.0, 330.0))),
    WalkerSpec(150, ((0, 2080.0, 412.0), (180, -160.0, 412.0)), mirrored=True),
    WalkerSpec(110, ((200, -120.0, 250.0), (320, 1300.0, 950.0))),
    WalkerSpec(110, ((200, -120.0, 950.0), (320, 1300.0, 250.0)), mirrored=True),
    WalkerSpec(130, ((0, 1600.0, 800.0), (20, 2000.0, 800.0), (24, 2000.0, 800.0), (60, 1620.0, 780.0),
                     (200, 1660.0, 1040.0), (206, 1660.0, 1170.0), (209, 1660.0, 1170.0), (226, 1660.0, 940.0),
                     (500, 1700.0, 820.0))),
    WalkerSpec(90, ((340, -100.0, 860.0), (480, 2020.0, 860.0))),
)
VISIBLE_SHARE = 0.75  # of a face box's area, in the frame and uncovered: a face the ground truth counts


@dataclass(frozen=True, slots=True)
class Blob:
    """A soft Gaussian patch of colour drifting over the background."""

    color: tuple[float, float, float]
    """RGB added at the blob centre, 0-255 units (may be negative to darken)."""
    sigma_px: float
    """Gaussian radius, frame pixels."""
    cycles_x: int
    """Horizontal drifts across the frame per clip."""
    cycles_y: int
    """Vertical drifts per clip."""
    phase: float
    """Phase of the drift, radians."""


BLOBS = (
    Blob((40.0, 10.0, -20.0), 260.0, cycles_x=1, cycles_y=1, phase=0.0),
    Blob((-25.0, 20.0, 35.0), 340.0, cycles_x=1, cycles_y=2, phase=2.0),
    Blob((15.0, 35.0, 10.0), 200.0, cycles_x=2, cycles_y=1, phase=4.0),
)
# Corner colours of the background gradient: top-left, top-right, bottom-left, bottom-right.
GRADIENT_CORNERS = ((40.0, 60.0, 110.0), (90.0, 70.0, 120.0), (60.0, 100.0, 90.0), (120.0, 110.0, 70.0))
GRADIENT_SWAY = 20.0  # 0-255 units the gradient's colours sway by over the clip


@dataclass(frozen=True, slots=True)
class Sprite:
    """A sprite rendered at its final scale, with its face box in sprite pixels."""

    spec: SpriteSpec
    rgb: NDArray[np.float32]
    """(h, w, 3) colour, 0-255."""
    alpha: NDArray[np.float32]
    """(h, w, 1) opacity, 0-1."""
    face_box: tuple[float, float, float, float]
    """(x1, y1, x2, y2) in sprite pixels."""

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    def position(self, frame_index: int) -> tuple[int, int]:
        """Top-left corner in the frame at ``frame_index``; whole pixels so the GT is exact."""
        lane_x1, lane_y1, lane_x2, lane_y2 = self.spec.lane
        t = 2.0 * math.pi * frame_index / FRAMES
        u = 0.5 + 0.5 * math.sin(self.spec.cycles_x * t + self.spec.phase_x)
        v = 0.5 + 0.5 * math.sin(self.spec.cycles_y * t + self.spec.phase_y)
        return (
            lane_x1 + round(u * (lane_x2 - lane_x1 - self.width)),
            lane_y1 + round(v * (lane_y2 - lane_y1 - self.height)),
        )

    def face_box_at(self, frame_index: int) -> list[float]:
        """Face box in frame pixels at ``frame_index``."""
        x, y = self.position(frame_index)
        x1, y1, x2, y2 = self.face_box
        return [round(x + x1, 1), round(y + y1, 1), round(x + x2, 1), round(y + y2, 1)]


def params_hash(codec: str = "h264", scene: str = "lanes") -> str:
    """Short hash of every parameter that changes the generated clip (of ``codec`` and ``scene``) or its ground truth."""
    params: dict[str, object] = {
        "version": GENERATOR_VERSION,
        "size": [WIDTH, HEIGHT],
        "fps": FPS,
        "frames": FRAMES,
        "gop": GOP,
        "bitrate": BITRATE,
        "vbv_buffer": VBV_BUFFER,
        "preset": X264_PRESET,
        "profile": X264_PROFILE,
        "threads": X264_THREADS,
        "face_box": ASTRONAUT_FACE_BOX,
        "crop": HEAD_CROP,
        "feather": SPRITE_FEATHER_PX,
        "sprites": [asdict(spec) for spec in SPRITES],
        "blobs": [asdict(blob) for blob in BLOBS],
        "gradient": [GRADIENT_CORNERS, GRADIENT_SWAY],
    }
    if codec == "h265":
        # The H.264 parameters stay as they were, so existing H.264 clips keep their hash.
        del params["preset"], params["profile"], params["threads"]
        params.update(codec=codec, preset=X265_PRESET, pools=X265_POOLS, frame_threads=X265_FRAME_THREADS)
    if scene == "tracks":
        # The lanes scene's parameters stay as they were, so its clips keep their hash.
        del params["sprites"]
        params.update(scene=scene, walkers=[asdict(spec) for spec in WALKERS], visible_share=VISIBLE_SHARE)
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def feathered_alpha(height: int, width: int, feather_px: float) -> NDArray[np.float32]:
    """(h, w, 1) opacity that is 1 inside and ramps smoothly to 0 over ``feather_px`` at the border."""
    ys = np.minimum(np.arange(height), np.arange(height)[::-1]).astype(np.float32)
    xs = np.minimum(np.arange(width), np.arange(width)[::-1]).astype(np.float32)
    edge = np.clip(np.minimum(ys[:, None], xs[None, :]) / feather_px, 0.0, 1.0)
    return (edge * edge * (3.0 - 2.0 * edge))[:, :, None]  # smoothstep


def scaled_astronaut(
    source: NDArray[np.uint8], face_height_px: float, mirrored: bool
) -> tuple[NDArray[np.float32], NDArray[np.float32], tuple[float, float, float, float]]:
    """The head-and-shoulders crop scaled to ``face_height_px`` (optionally mirrored): its
    colour, opacity and face box (sprite pixels)."""
    crop_x1, crop_y1, crop_x2, crop_y2 = HEAD_CROP
    face_x1, face_y1, face_x2, face_y2 = ASTRONAUT_FACE_BOX
    scale = face_height_px / (face_y2 - face_y1)
    crop = source[crop_y1:crop_y2, crop_x1:crop_x2]
    height, width = round(crop.shape[0] * scale), round(crop.shape[1] * scale)
    rgb = transform.resize(crop, (height, width), order=3, anti_aliasing=scale < 1, preserve_range=True)
    rgb = np.clip(rgb, 0.0, 255.0).astype(np.float32)
    # resize maps pixel edges onto pixel edges, so continuous coordinates scale by out/in exactly.
    scale_x, scale_y = width / crop.shape[1], height / crop.shape[0]
    box_x1, box_x2 = (face_x1 - crop_x1) * scale_x, (face_x2 - crop_x1) * scale_x
    box_y1, box_y2 = (face_y1 - crop_y1) * scale_y, (face_y2 - crop_y1) * scale_y
    if mirrored:
        rgb = rgb[:, ::-1]
        box_x1, box_x2 = width - box_x2, width - box_x1
    alpha = feathered_alpha(height, width, SPRITE_FEATHER_PX * scale)
    return np.ascontiguousarray(rgb), alpha, (box_x1, box_y1, box_x2, box_y2)


def build_sprite(source: NDArray[np.uint8], spec: SpriteSpec) -> Sprite:
    """Crop, scale and optionally mirror the astronaut; carry the face box along."""
    rgb, alpha, face_box = scaled_astronaut(source, spec.face_height_px, spec.mirrored)
    height, width = rgb.shape[:2]
    lane_x1, lane_y1, lane_x2, lane_y2 = spec.lane
    if width > lane_x2 - lane_x1 or height > lane_y2 - lane_y1:
        raise ValueError(f"sprite {width}x{height} for face height {spec.face_height_px} does not fit lane {spec.lane}")
    return Sprite(spec, rgb, alpha, face_box)


@dataclass(frozen=True, slots=True)
class Walker:
    """A walker's sprite at its final scale, with its face box in sprite pixels."""

    spec: WalkerSpec
    rgb: NDArray[np.float32]
    alpha: NDArray[np.float32]
    face_box: tuple[float, float, float, float]

    def position(self, frame_index: int) -> tuple[int, int] | None:
        """Top-left corner in the frame at ``frame_index`` (whole pixels), or None when absent."""
        points = self.spec.waypoints
        if not points[0][0] <= frame_index <= points[-1][0]:
            return None
        (f0, x0, y0), (f1, x1, y1) = next(
            (a, b) for a, b in zip(points, points[1:] + points[-1:]) if a[0] <= frame_index <= b[0]
        )
        share = 0.0 if f1 == f0 else (frame_index - f0) / (f1 - f0)
        box_x1, box_y1, box_x2, box_y2 = self.face_box
        centre_x, centre_y = x0 + share * (x1 - x0), y0 + share * (y1 - y0)
        return round(centre_x - (box_x1 + box_x2) / 2), round(centre_y - (box_y1 + box_y2) / 2)


def build_walker(source: NDArray[np.uint8], spec: WalkerSpec) -> Walker:
    return Walker(spec, *scaled_astronaut(source, spec.face_height_px, spec.mirrored))


def render_background(frame_index: int) -> NDArray[np.float32]:
    """(HEIGHT, WIDTH, 3) smooth background: a swaying bilinear gradient plus drifting blobs.

    Every term is separable (a column profile times a row profile), so the whole image is one
    small matrix product: ``rows (HEIGHT, k) @ columns (k, WIDTH * 3)``.
    """
    t = 2.0 * math.pi * frame_index / FRAMES
    corners = np.array(GRADIENT_CORNERS, np.float32)
    corners += GRADIENT_SWAY * np.sin(t + np.arange(4, dtype=np.float32)[:, None] * 1.3)
    top_left, top_right, bottom_left, bottom_right = corners
    u = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[:, None]
    v = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)
    rows = [1.0 - v, 1.0 - v, v, v]
    columns = [top_left * (1.0 - u), top_right * u, bottom_left * (1.0 - u), bottom_right * u]
    xs = np.arange(WIDTH, dtype=np.float32)
    ys = np.arange(HEIGHT, dtype=np.float32)
    for blob in BLOBS:
        centre_x = WIDTH * (0.5 + 0.4 * math.sin(blob.cycles_x * t + blob.phase))
        centre_y = HEIGHT * (0.5 + 0.4 * math.cos(blob.cycles_y * t + blob.phase))
        rows.append(np.exp(-0.5 * ((ys - centre_y) / blob.sigma_px) ** 2))
        weight_x = np.exp(-0.5 * ((xs - centre_x) / blob.sigma_px) ** 2)
        columns.append(weight_x[:, None] * np.array(blob.color, np.float32))
    image = np.stack(rows, axis=1) @ np.stack(columns).reshape(len(columns), WIDTH * 3)
    return image.reshape(HEIGHT, WIDTH, 3)


def composite(image: NDArray[np.float32], rgb: NDArray[np.float32], alpha: NDArray[np.float32], x: int, y: int) -> None:
    """Blend a sprite into ``image`` with its top-left corner at (x, y); what lies outside the frame is cut off."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + width, image.shape[1]), min(y + height, image.shape[0])
    if x1 >= x2 or y1 >= y2:
        return
    region = image[y1:y2, x1:x2]
    region += (rgb[y1 - y : y2 - y, x1 - x : x2 - x] - region) * alpha[y1 - y : y2 - y, x1 - x : x2 - x]


def render_frame(frame_index: int, sprites: list[Sprite]) -> NDArray[np.uint8]:
    """(HEIGHT, WIDTH, 3) RGB frame with every sprite composited at its position."""
    image = render_background(frame_index)
    for sprite in sprites:
        composite(image, sprite.rgb, sprite.alpha, *sprite.position(frame_index))
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)


def render_walkers(frame_index: int, walkers: list[Walker]) -> NDArray[np.uint8]:
    """(HEIGHT, WIDTH, 3) RGB frame of the ``tracks`` scene: the walkers present, in order."""
    image = render_background(frame_index)
    for walker in walkers:
        if (position := walker.position(frame_index)) is not None:
            composite(image, walker.rgb, walker.alpha, *position)
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)


def walker_faces(frame_index: int, walkers: list[Walker]) -> dict[str, list]:
    """Ground truth of the ``tracks`` scene at ``frame_index``: the counted faces' boxes (cut to
    the frame) and ids (``faces``, ``ids``), and those of the faces present but less than
    :data:`VISIBLE_SHARE` visible, outside the frame or behind a later walker's opaque half
    (``ignored``, ``ignored_ids``)."""
    truth: dict[str, list] = {"faces": [], "ids": [], "ignored": [], "ignored_ids": []}
    positions = [walker.position(frame_index) for walker in walkers]
    for index, (walker, position) in enumerate(zip(walkers, positions)):
        if position is None:
            continue
        x, y = position
        fx1, fy1, fx2, fy2 = (x + walker.face_box[0], y + walker.face_box[1], x + walker.face_box[2], y + walker.face_box[3])
        px1, py1, px2, py2 = math.floor(fx1), math.floor(fy1), math.ceil(fx2), math.ceil(fy2)
        seen = np.zeros((py2 - py1, px2 - px1), bool)
        seen[max(0, -py1) : max(0, HEIGHT - py1), max(0, -px1) : max(0, WIDTH - px1)] = True  # inside the frame
        for front, where in zip(walkers[index + 1 :], positions[index + 1 :]):
            if where is None:
                continue
            ox, oy = where
            opaque = front.alpha[..., 0] > 0.5
            ax1, ay1 = max(px1, ox), max(py1, oy)
            ax2, ay2 = min(px2, ox + opaque.shape[1]), min(py2, oy + opaque.shape[0])
            if ax1 < ax2 and ay1 < ay2:
                seen[ay1 - py1 : ay2 - py1, ax1 - px1 : ax2 - px1] &= ~opaque[ay1 - oy : ay2 - oy, ax1 - ox : ax2 - ox]
        share = seen.sum() / seen.size
        if share <= 0:
            continue
        box = [round(max(fx1, 0.0), 1), round(max(fy1, 0.0), 1), round(min(fx2, WIDTH), 1), round(min(fy2, HEIGHT), 1)]
        boxes, ids = ("faces", "ids") if share >= VISIBLE_SHARE else ("ignored", "ignored_ids")
        truth[boxes].append(box)
        truth[ids].append(index + 1)
    return truth


def encoder_settings(codec: str) -> tuple[str, str, dict[str, str]]:
    """``(PyAV format, encoder, encoder options)`` for ``codec``: one IDR with parameter sets per GOP, no B-frames."""
    if codec == "h265":
        x265_params = ":".join(
            (
                f"keyint={GOP}",
                f"min-keyint={GOP}",
                "scenecut=0",
                "open-gop=0",
                "bframes=0",
                "repeat-headers=1",
                f"vbv-maxrate={BITRATE // 1000}",
                f"vbv-bufsize={VBV_BUFFER // 1000}",
                f"pools={X265_POOLS}",
                f"frame-threads={X265_FRAME_THREADS}",
                "log-level=error",
            )
        )
        return "hevc", "libx265", {"preset": X265_PRESET, "x265-params": x265_params}
    x264_params = ":".join(
        (
            f"keyint={GOP}",
            f"min-keyint={GOP}",
            "scenecut=0",
            "bframes=0",
            "repeat-headers=1",
            f"vbv-maxrate={BITRATE // 1000}",
            f"vbv-bufsize={VBV_BUFFER // 1000}",
        )
    )
    return "h264", "libx264", {"preset": X264_PRESET, "profile": X264_PROFILE, "x264-params": x264_params}


def encode(out: Path, render: Callable[[int], NDArray[np.uint8]], codec: str = "h264") -> None:
    """Render every frame (``render(frame_index)``, RGB) and encode it to an Annex-B H.264 or H.265 file at ``out``."""
    container_format, encoder, options = encoder_settings(codec)
    with av.open(str(out), mode="w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=FPS, options=options)
        stream.codec_context.width = WIDTH
        stream.codec_context.height = HEIGHT
        stream.codec_context.pix_fmt = "yuv420p"
        stream.codec_context.bit_rate = BITRATE
        stream.codec_context.gop_size = GOP
        stream.codec_context.max_b_frames = 0
        stream.codec_context.thread_count = X264_THREADS
        for frame_index in range(FRAMES):
            rgb = av.VideoFrame.from_ndarray(render(frame_index), format="rgb24")
            frame = rgb.reformat(format="yuv420p")
            frame.pts = frame_index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def ground_truth_path(video: Path) -> Path:
    """``media/x.h264`` -> ``media/x.gt.json``; other clips keep their suffix: ``media/x.h265.gt.json``.

    So the H.264 and H.265 clips of one scene never overwrite each other's ground truth.
    """
    if video.suffix == ".h264":
        return video.with_suffix(".gt.json")
    return video.with_name(video.name + ".gt.json")


def is_up_to_date(video: Path, gt_path: Path, params: str) -> bool:
    """True when both outputs exist and the ground truth was made with ``params``."""
    if not (video.is_file() and video.stat().st_size > 0 and gt_path.is_file()):
        return False
    try:
        stored = json.loads(gt_path.read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(stored, dict) and stored.get("params") == params


def scene_truth(scene: str, source: NDArray[np.uint8]) -> tuple[Callable[[int], NDArray[np.uint8]], dict[str, object]]:
    """``scene``'s frame renderer and its ground truth (besides the clip's size, rate and params)."""
    if scene == "tracks":
        walkers = [build_walker(source, spec) for spec in WALKERS]
        frames = [walker_faces(i, walkers) for i in range(FRAMES)]
        return (lambda i: render_walkers(i, walkers)), {key: [frame[key] for frame in frames] for key in frames[0]}
    sprites = [build_sprite(source, spec) for spec in SPRITES]
    return (lambda i: render_frame(i, sprites)), {"faces": [[sprite.face_box_at(i) for sprite in sprites] for i in range(FRAMES)]}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", choices=CODECS, default="h264", help="video codec (default h264)")
    parser.add_argument("--scene", choices=SCENES, default="lanes",
                        help="lanes: the sample clip (default); tracks: walkers that cross and leave, for tracking")
    parser.add_argument("--out", type=Path, help=f"output path (default {sample_clip('<codec>')}, or {tracks_clip('<codec>')})")
    parser.add_argument("--force", action="store_true", help="regenerate even when the outputs are up to date")
    args = parser.parse_args(argv)

    video: Path = args.out or (tracks_clip if args.scene == "tracks" else sample_clip)(args.codec)
    gt_path = ground_truth_path(video)
    params = params_hash(args.codec, args.scene)
    if not args.force and is_up_to_date(video, gt_path, params):
        print(f"{video} and {gt_path} are up to date (params {params}); nothing to do")
        return 0

    started = time.monotonic()
    render, truth = scene_truth(args.scene, data.astronaut())
    video.parent.mkdir(parents=True, exist_ok=True)
    # Write both outputs under temporary names and rename at the end, so an interrupted run
    # never leaves a clip that looks up to date.
    video_tmp = video.with_name(video.name + ".tmp")
    gt_tmp = gt_path.with_name(gt_path.name + ".tmp")
    encode(video_tmp, render, args.codec)
    ground_truth = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "frames": FRAMES, "gop": GOP, "params": params, **truth}
    gt_tmp.write_text(json.dumps(ground_truth, separators=(",", ":")) + "\n")
    video_tmp.replace(video)
    gt_tmp.replace(gt_path)

    elapsed_s = time.monotonic() - started
    size = video.stat().st_size
    bitrate_kbps = size * 8 * FPS / FRAMES / 1000
    print(f"wrote {video} ({size} bytes, {bitrate_kbps:.0f} kbit/s) and {gt_path} in {elapsed_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
