"""A camera's access-unit queue: bounded, drops whole GOP tails, lets a new stream in, waits for room."""

from __future__ import annotations

import asyncio

from dalistream.decode import StreamStart
from dalistream.ingest import ReceivedAccessUnit
from dalistream.pipeline.units import Put, UnitQueue


def unit(n: int, key: bool = False) -> ReceivedAccessUnit:
    return ReceivedAccessUnit(bytes([n]), key, n / 25, 0.0, 0.0)


def test_a_full_queue_drops_the_rest_of_the_gop_until_a_key_unit() -> None:
    async def main() -> None:
        queue = UnitQueue(3)
        assert queue.start(StreamStart("H264")) == 0
        assert [queue.put(unit(n, key=n == 0)) for n in range(2)] == [Put.QUEUED] * 2
        assert queue.put(unit(2)) is Put.BACKLOG  # full: this P-frame goes, and its GOP with it
        assert await queue.take(1) == [StreamStart("H264")]
        assert queue.put(unit(3)) is Put.SKIPPED  # room again, but it would decode broken
        assert queue.put(unit(4, key=True)) is Put.QUEUED
        assert queue.put(unit(5)) is Put.BACKLOG
        assert [u.data[0] for u in await queue.take(8)] == [0, 1, 4]

    asyncio.run(main())


def test_a_new_stream_always_gets_in() -> None:
    async def main() -> None:
        queue = UnitQueue(2)
        queue.start(StreamStart("H264"))
        queue.put(unit(0, key=True))
        assert queue.start(StreamStart("H265")) == 1  # the oldest waiting item made way
        assert await queue.take(8) == [unit(0, key=True), StreamStart("H265")]

    asyncio.run(main())


def test_take_returns_what_waits_then_none_after_close() -> None:
    async def main() -> None:
        queue = UnitQueue(10)
        queue.start(StreamStart("H264"))
        for n in range(5):
            queue.put(unit(n, key=n == 0))
        queue.close()
        assert len(await queue.take(4)) == 4
        assert [u.data[0] for u in await queue.take(4)] == [3, 4]
        assert await queue.take(4) is None
        assert await queue.take(4) is None

    asyncio.run(main())


def test_room_waits_until_the_reader_takes() -> None:
    async def main() -> None:
        queue = UnitQueue(2)
        queue.start(StreamStart("H264"))
        queue.put(unit(0, key=True))
        waiting = asyncio.create_task(queue.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await queue.take(1)
        await asyncio.wait_for(waiting, 1.0)
        assert queue.put(unit(1)) is Put.QUEUED

    asyncio.run(main())
