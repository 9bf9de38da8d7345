"""How every DALI graph of this project is built and run: one executor for all of them.

``Pipeline.run(stream)`` — outputs ready in a CUDA stream's order, without the host waiting —
needs DALI's dynamic executor: with the legacy executor's ``exec_async=False,
exec_pipelined=False``, DALI 2.4 raises "Asynchronous outputs require legacy execution model,
which requires `exec_async` and `exec_pipelined` to be enabled" and the pipeline hangs on its
next run. The dynamic executor is DALI's default when both are on; ``prefetch_queue_depth=1``
keeps one batch in flight, so each run's inputs are those fed just before it and a run's
outputs stay valid until the next run. CPU graphs (``device_id`` None) run the same way,
host-synchronously (no stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EXECUTOR: dict[str, Any] = {"exec_async": True, "exec_pipelined": True, "exec_dynamic": True, "prefetch_queue_depth": 1}
"""The executor settings of every pipeline (see the module docstring)."""


def build(graph: Callable[..., Any], *, device_id: int | None, **arguments: Any) -> Any:
    """A built pipeline of the ``@pipeline_def`` ``graph`` on GPU ``device_id`` (None: CPU only)."""
    pipe = graph(device_id=device_id, **EXECUTOR, **arguments)
    pipe.build()
    return pipe


def run(pipe: Any, stream: Any = None) -> tuple[Any, ...]:
    """One run of ``pipe``: with a CUDA ``stream`` (any object DALI takes as one: a CuPy stream,
    its pointer) the outputs are ready in that stream's order and the host does not wait;
    without, the run is host-synchronous (CPU graphs)."""
    return pipe.run() if stream is None else pipe.run(stream)
