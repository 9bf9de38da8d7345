"""Running the real runtime in a test: until a duration or until every clip ended, while a
scenario plays beside it; then every JSON line it wrote."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from dalistream.config import Config
from dalistream.pipeline.runtime import Runtime

RUN_LIMIT_S = 120.0  # a run that does not end by then is a hang: fail


def run_pipeline(
    config: Config,
    duration_s: float | None = None,
    scenario: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[dict[str, Any]], Runtime]:
    """Every JSON line of a run of ``config`` (``duration_s`` None: until every clip ended), and
    the runtime; raises what the runtime raised."""
    runtime = Runtime(config)

    async def main() -> None:
        stop = asyncio.Event()
        if duration_s is not None:
            asyncio.get_running_loop().call_later(duration_s, stop.set)
        pipeline = asyncio.create_task(runtime.run(stop))
        if scenario is not None:
            await scenario()
        await asyncio.wait_for(pipeline, RUN_LIMIT_S)

    asyncio.run(main())
    return [json.loads(line) for path in runtime.output_paths for line in path.read_text().splitlines()], runtime
