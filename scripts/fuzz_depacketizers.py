"""Fuzz the H.264 and H.265 depacketizers with mutated real RTP streams and random bytes.

Real streams (libx264 / libx265 through PyAV, packetized by the test packetizers in ``tests/``
at several MTUs, H.265 also with DONL fields) are serialized to wire bytes, then mutated packet
by packet: bit flips in the payload or anywhere, truncation, splices of two packets, random
payload headers, random RTP sequence numbers, timestamps, markers and SSRCs, duplicates, swaps
and drops, and plain random datagrams. Every datagram goes through ``RtpPacket.parse`` and, if
it parses, into the depacketizer.

Allowed outcomes only: ``parse`` raises nothing but ``RtpError``; ``feed``/``flush`` never raise
and return only ``AccessUnit``/``PacketLoss``/``AccessUnitDropped``; an access unit is Annex-B
no larger than the bound plus the parameter sets; the buffered bytes never exceed the bound;
the tracemalloc peak of the fuzz loop stays under ``--peak-limit-mib``. It prints the counts
(packets, parse errors, access units, drops by reason, peak memory) and exits 1 on any violation.

Usage (about 16 s for both codecs on a 2-core machine; ``tests/property/test_fuzz_depacketizers.py`` runs a short one)::

    .venv/bin/python scripts/fuzz_depacketizers.py [--packets 100000] [--seed 1] [--codec h264 h265]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the test packetizers: the depacketizers' counterparts

from rtp_packetizer import H264Packetizer, split_annexb  # noqa: E402
from rtp_packetizer_h265 import H265Packetizer  # noqa: E402

from dalistream.rtp.depacketizer import START_CODE, AccessUnit, AccessUnitDropped, Depacketizer, PacketLoss  # noqa: E402
from dalistream.rtp.h264 import H264Depacketizer  # noqa: E402
from dalistream.rtp.h265 import H265Depacketizer  # noqa: E402
from dalistream.rtp.packet import RtpError, RtpPacket  # noqa: E402

LARGE_ACCESS_UNIT_BOUND = 200_000  # bytes; the small bound is the median key access unit, so some are too large
# Calm stretches (nothing mutated, so access units get through) alternate with storms.
CALM_DATAGRAMS = (50, 1500)
STORM_DATAGRAMS = (10, 600)
STORM_MUTATION_RATE = 0.3  # share of datagrams mutated during a storm
JUMP_RATE = 0.002  # share of datagrams after which the walk jumps to a random place in the streams
RESTART_RATE = 0.0005  # share of datagrams after which a fresh depacketizer starts, as after a reconnect
DEFAULT_PEAK_LIMIT_MIB = 1.0  # measured peaks are below 0.1 MiB; the largest bound is 0.2 MB
MTUS = (120, 500, 1400)
MAX_DATAGRAM_BYTES = 1500
FRAMES = 30
GOP = 10
MAX_VIOLATIONS_SHOWN = 5


@dataclass
class Report:
    """What one codec's fuzz run saw."""

    codec: str
    packets: int = 0
    parse_errors: int = 0
    access_units: int = 0
    key_access_units: int = 0
    packet_losses: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    late_packets: int = 0
    peak_bytes: int = 0
    elapsed_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        drops = ", ".join(f"{reason} {count}" for reason, count in sorted(self.drops.items())) or "none"
        return (f"{self.codec}: {self.packets} packets, {self.parse_errors} parse errors (RtpError), "
                f"{self.access_units} access units ({self.key_access_units} key), {self.packet_losses} loss events, "
                f"{self.late_packets} late, drops: {drops}; tracemalloc peak {self.peak_bytes / 2**20:.2f} MiB; "
                f"{self.elapsed_s:.1f} s; {len(self.violations)} violations")


def encode_stream(codec: str) -> list[list[bytes]]:
    """A small real stream (160x128, no B-frames, IDR every ``GOP``) as NAL units per access unit."""
    encoder, container_format, params_key, params = {
        "h264": ("libx264", "h264", "x264-params", f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"),
        "h265": ("libx265", "hevc", "x265-params", f"keyint={GOP}:min-keyint={GOP}:scenecut=0:open-gop=0:bframes=0"
                 ":repeat-headers=1:pools=none:frame-threads=1:log-level=error"),
    }[codec]
    texture = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    access_units = []
    with av.open(io.BytesIO(), "w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "yuv420p"
        stream.options = {"preset": "ultrafast", params_key: params}
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.roll(texture, 3 * index, axis=1), format="rgb24")
            access_units += [bytes(packet) for packet in stream.encode(frame)]
        access_units += [bytes(packet) for packet in stream.encode()]
    return [split_annexb(unit) for unit in access_units]


@dataclass(frozen=True)
class Source:
    """A real stream, ready to fuzz with."""

    datagrams: list[bytes]
    """Wire bytes of the stream packetized every supported way, one packetization after the other."""
    parameter_sets: list[bytes]
    """Its SPS/PPS or VPS/SPS/PPS, to hand some depacketizers as if from the SDP."""
    small_bound: int
    """The median size of its key access units: about half of them are too large for it."""


def h264_nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def h265_nal_type(nal: bytes) -> int:
    return nal[0] >> 1 & 0x3F


def source(codec: str) -> Source:
    """Encode and packetize ``codec``'s stream."""
    stream = encode_stream(codec)
    datagrams = []
    if codec == "h264":
        key_types, parameter_set_types, nal_type = {5}, {7, 8}, h264_nal_type
        for mtu in MTUS:
            datagrams += [bytes(packet) for packet in H264Packetizer(mtu).packetize_all(stream)]
    else:
        key_types, parameter_set_types, nal_type = set(range(16, 22)), {32, 33, 34}, h265_nal_type
        for mtu in MTUS:
            for donl in (False, True):
                datagrams += [bytes(packet) for packet in H265Packetizer(mtu, donl=donl).packetize_all(stream)]
    key_sizes = sorted(sum(len(START_CODE) + len(nal) for nal in nals) for nals in stream
                       if key_types & {nal_type(nal) for nal in nals})
    parameter_sets = [nal for nal in stream[0] if nal_type(nal) in parameter_set_types]
    return Source(datagrams, parameter_sets, key_sizes[len(key_sizes) // 2])


def new_depacketizer(codec: str, stream: Source, rng: random.Random) -> tuple[Depacketizer, int]:
    """A depacketizer set up at random (bound, SDP parameter sets, DONL) and its access unit size limit."""
    bound = rng.choice([stream.small_bound, LARGE_ACCESS_UNIT_BOUND])
    sdp_sets = stream.parameter_sets if rng.random() < 0.5 else []
    limit = bound + sum(len(START_CODE) + len(nal) for nal in sdp_sets)
    if codec == "h264":
        return H264Depacketizer(sdp_sets, max_access_unit_bytes=bound), limit
    return H265Depacketizer(sdp_sets, max_access_unit_bytes=bound, donl=rng.random() < 0.5), limit


def flip_bits(data: bytes, rng: random.Random, start: int) -> bytes:
    if len(data) <= start:
        return data
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutable[rng.randrange(start, len(data))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def with_header(data: bytes, *, seq: int | None = None, ts: int | None = None,
                marker: bool | None = None, ssrc: int | None = None) -> bytes:
    """``data`` with some fixed RTP header fields replaced (only when it has a fixed header)."""
    if len(data) < 12:
        return data
    header = bytearray(data[:12])
    if seq is not None:
        header[2:4] = seq.to_bytes(2)
    if ts is not None:
        header[4:8] = ts.to_bytes(4)
    if marker is not None:
        header[1] = header[1] & 0x7F | (0x80 if marker else 0)
    if ssrc is not None:
        header[8:12] = ssrc.to_bytes(4)
    return bytes(header) + data[12:]


def mutate(data: bytes, successor: bytes, other: bytes, rng: random.Random) -> list[bytes]:
    """Mutated datagrams to send in place of ``data`` (none, one or several).

    ``successor`` is the datagram due next (for swaps), ``other`` any datagram (for splices).
    """
    kind = rng.randrange(12)
    if kind == 0:
        return [flip_bits(data, rng, start=12)]  # payload bits
    if kind == 1:
        return [flip_bits(data, rng, start=0)]  # anywhere, header included
    if kind == 2:
        return [data[:rng.randrange(len(data) + 1)]]  # truncation
    if kind == 3:
        return [data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]]  # splice
    if kind == 4:
        head = rng.randbytes(rng.randint(1, 3))
        return [data[:12] + head + data[12 + len(head):]]  # random payload header
    if kind == 5:
        return [with_header(data, seq=rng.randrange(1 << 16))]
    if kind == 6:
        return [with_header(data, ts=rng.choice([0, 0xFFFF_FFFF, rng.randrange(1 << 32)]))]
    if kind == 7:
        return [with_header(data, marker=rng.random() < 0.5, ssrc=rng.choice([0x1234_5678, rng.randrange(1 << 32)]))]
    if kind == 8:
        return [data, data]  # duplicate
    if kind == 9:
        return []  # loss
    if kind == 10:
        return [successor, data]  # swapped with its successor
    return [rng.randbytes(rng.randrange(MAX_DATAGRAM_BYTES))]  # random bytes


def check_events(events: list[object], report: Report, limit: int) -> None:
    """Count the events; an access unit must be Annex-B of at most ``limit`` bytes."""
    for event in events:
        if isinstance(event, AccessUnit):
            report.access_units += 1
            report.key_access_units += event.key
            if not event.data.startswith(START_CODE) or len(event.data) > limit:
                report.violations.append(f"access unit out of shape: {len(event.data)} bytes {event.data[:8].hex()}")
        elif isinstance(event, AccessUnitDropped):
            report.drops[event.reason] += 1
        elif isinstance(event, PacketLoss):
            report.packet_losses += 1
        else:
            report.violations.append(f"unexpected event {event!r}")


def fuzz(codec: str, packets: int, seed: int, peak_limit_bytes: int) -> Report:
    """Send ``packets`` datagrams of mutated ``codec`` streams through parse + depacketizer."""
    rng = random.Random(seed)
    stream = source(codec)
    datagrams = stream.datagrams
    report = Report(codec)
    started = time.perf_counter()
    tracemalloc.start()
    tracemalloc.reset_peak()
    depacketizer, limit = new_depacketizer(codec, stream, rng)
    index = seq = 0
    storm, weather_left = False, rng.randint(*CALM_DATAGRAMS)
    while report.packets < packets:
        weather_left -= 1
        if weather_left <= 0:
            storm = not storm
            weather_left = rng.randint(*(STORM_DATAGRAMS if storm else CALM_DATAGRAMS))
        if rng.random() < RESTART_RATE:
            report.late_packets += depacketizer.late_packets
            depacketizer, limit = new_depacketizer(codec, stream, rng)
        if storm and rng.random() < JUMP_RATE:
            index = rng.randrange(len(datagrams))
        # Clean datagrams keep consecutive sequence numbers across the packetizations and jumps.
        data = with_header(datagrams[index], seq=seq)
        index = (index + 1) % len(datagrams)
        seq = (seq + 1) & 0xFFFF
        if storm and rng.random() < STORM_MUTATION_RATE:
            successor = with_header(datagrams[index], seq=seq)
            sent = mutate(data, successor, datagrams[rng.randrange(len(datagrams))], rng)
        else:
            sent = [data]
        for data in sent:
            report.packets += 1
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                report.parse_errors += 1
                continue
            except Exception as error:  # noqa: BLE001 - the point of a fuzzer: record anything else
                report.violations.append(f"parse raised {error!r} on {data.hex()}")
                continue
            try:
                check_events(depacketizer.feed(packet), report, limit)
            except Exception as error:  # noqa: BLE001
                report.violations.append(f"feed raised {error!r} on {data.hex()}")
                depacketizer, limit = new_depacketizer(codec, stream, rng)
            if depacketizer.buffered_bytes > limit:
                report.violations.append(f"buffered {depacketizer.buffered_bytes} bytes > {limit}")
    try:
        check_events(depacketizer.flush(), report, limit)
    except Exception as error:  # noqa: BLE001
        report.violations.append(f"flush raised {error!r}")
    report.late_packets += depacketizer.late_packets
    report.peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if report.peak_bytes > peak_limit_bytes:
        report.violations.append(f"tracemalloc peak {report.peak_bytes} bytes > limit {peak_limit_bytes}")
    report.elapsed_s = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 if any violation was found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000, help="datagrams per codec (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--codec", nargs="+", choices=("h264", "h265"), default=["h264", "h265"])
    parser.add_argument("--peak-limit-mib", type=float, default=DEFAULT_PEAK_LIMIT_MIB,
                        help=f"tracemalloc peak allowed per codec (default {DEFAULT_PEAK_LIMIT_MIB})")
    args = parser.parse_args(argv)
    failed = False
    for codec in args.codec:
        report = fuzz(codec, args.packets, args.seed, int(args.peak_limit_mib * 2**20))
        print(report.summary())
        for violation in report.violations[:MAX_VIOLATIONS_SHOWN]:
            print(f"  VIOLATION {violation}")
        failed |= bool(report.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
