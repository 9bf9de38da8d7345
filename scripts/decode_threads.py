"""Decoding one H.264 stream with one thread (the service: a thread per decoder, decoders spread
over a pool) against FFmpeg's own frame or slice threads: process CPU and wall time per frame,
loop filter on key frames only (the default), passes alternated:

    .venv/bin/python scripts/decode_threads.py CLIP.h264 [--frames 300] [--passes 3]
"""

from __future__ import annotations

import argparse
import time

import av

SHAPES = ((1, None), (2, "FRAME"), (2, "SLICE"))


def decode(clip: str, frames: int, threads: int, thread_type: str | None) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame over the clip's first ``frames`` frames."""
    with av.open(clip, format="h264") as container:
        context = container.streams.video[0].codec_context
        context.thread_count = threads
        if thread_type is not None:
            context.thread_type = thread_type
        context.options = {"skip_loop_filter": "nokey"}
        n = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in container.decode(video=0):
            n += 1
            if n == frames:
                break
        return (time.process_time() - cpu) / n * 1e3, (time.perf_counter() - wall) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.passes):
        for threads, thread_type in SHAPES:
            cpu, wall = decode(args.clip, args.frames, threads, thread_type)
            print(f"threads {threads} {thread_type or 'none':5}  CPU {cpu:.2f} ms/frame  wall {wall:.2f} ms/frame")


if __name__ == "__main__":
    main()
