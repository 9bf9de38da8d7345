"""Annex-B splitting and sequence parameters, and the NVDEC source's fresh decoder on a new SPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from model_inputs import clip_units

from dalistream.decode import StreamStart
from dalistream.decode.nvdec import NvdecFrame, NvdecFrameSource
from dalistream.decode.source import FrameSpec
from dalistream.ingest.sink import ReceivedAccessUnit
from dalistream.metrics import Stages
from dalistream.pipeline.sampling import Sampler
from dalistream.rtp.annexb import nal_units, sequence_parameters

SPS_A, SPS_B, PPS = b"\x67\x42\x00\x1f\xaa", b"\x67\x64\x00\x28\xbb", b"\x68\xce\x3c\x80"
IDR, P = b"\x65\x88\x84\x00\x10", b"\x41\x9a\x02"


def annexb(*nals: bytes, short: bool = False) -> bytes:
    return b"".join((b"\x00\x00\x01" if short else b"\x00\x00\x00\x01") + nal for nal in nals)


# A NAL unit as an encoder writes it: no 00 00 0x inside (emulation prevention), not ending in 00.
nal = st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00\x00" not in b and not b.endswith(b"\x00"))


@given(st.lists(nal, max_size=8), st.booleans())
def test_nal_units_are_what_was_joined(nals: list[bytes], short: bool) -> None:
    assert nal_units(annexb(*nals, short=short)) == nals


def test_zeros_before_a_start_code_are_stripped_and_the_last_nal_unit_keeps_its_own() -> None:
    assert nal_units(annexb(IDR + b"\x00\x00", P + b"\x00")) == [IDR, P + b"\x00"]
    assert nal_units(annexb(IDR + b"X", P)) == [IDR + b"X", P]  # only zeros are stripped


def test_sequence_parameters_per_codec() -> None:
    assert sequence_parameters(annexb(SPS_A, PPS, IDR), "H264") == SPS_A
    assert sequence_parameters(annexb(P), "H264") == b""
    vps, sps, pps, idr = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1", b"\x26\x01\xaf"  # H.265 types 32, 33, 34, 19
    assert sequence_parameters(annexb(vps, sps, pps, idr, short=True), "H265") == vps + sps


def test_the_sample_clip_key_units_carry_one_sps(sample_clip: Path) -> None:
    codec, units = clip_units(sample_clip, 4.0)
    keys = [unit for unit in units if unit.key]
    assert len(keys) >= 2
    assert len({sequence_parameters(unit.data, codec) for unit in keys}) == 1
    assert sequence_parameters(keys[0].data, codec)[0] & 0x1F == 7


class FakeNvdec:
    """Stands in for NVDEC (no GPU here): a frame per unit, tagged, and a log of decoders made."""

    made: list[str] = []

    def __init__(self, codec: str, input_size: tuple[int, int] | None) -> None:
        FakeNvdec.made.append(codec)

    def decode(self, data: bytes, tag: int) -> list[NvdecFrame]:
        return [NvdecFrame(tag, 64, 48, None)]

    def flush(self) -> list[NvdecFrame]:
        return []

    def convert(self, frame: NvdecFrame, letterbox, pixel_format: str) -> np.ndarray:
        return np.zeros((48, 64, 3), np.uint8)


class FakeNvdecSource(NvdecFrameSource):
    decoder = FakeNvdec


def test_a_new_sps_gets_a_fresh_decoder_and_no_frame_is_lost() -> None:
    FakeNvdec.made = []
    source = FakeNvdecSource("cam", Sampler(25.0), FrameSpec((64, 48), "bgr24"), Stages())
    units = [annexb(SPS_A, PPS, IDR), annexb(P), annexb(SPS_A, PPS, IDR), annexb(P), annexb(SPS_B, PPS, IDR), annexb(P)]
    received = [ReceivedAccessUnit(data, data.endswith(IDR), n * 0.04, float(n), float(n)) for n, data in enumerate(units)]
    decoded = source.process([StreamStart("H264"), *received[:3]])
    decoded_later = source.process(received[3:])
    assert FakeNvdec.made == ["H264", "H264"]  # the stream's decoder, and one for SPS_B
    assert [frame.pts for frame in decoded.frames + decoded_later.frames] == [unit.pts for unit in received]
    source.process([StreamStart("H264"), received[4]])  # a new stream: its first SPS is no change
    assert FakeNvdec.made == ["H264", "H264", "H264"]
