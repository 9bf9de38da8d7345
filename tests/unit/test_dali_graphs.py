"""The DALI graphs as the GPU path builds and runs them, checked with the installed DALI where no
GPU is needed: every operator argument of the "gpu"/"mixed" graphs against DALI's own operator
schema, and the executor every graph is built with against the stream-bound ``run`` the GPU
path makes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nvidia.dali import backend, fn, ops

from conftest import ROOT, require

from dalistream import dali
from dalistream.device import module_available
from dalistream.graphs import gop, letterbox

LETTERBOX = {"input_width": 96, "input_height": 64, "mean": [104.0, 117.0, 123.0], "std": [1.0, 1.0, 1.0]}


class Recorder:
    """``nvidia.dali.fn`` as the graphs see it, recording each operator they call and how."""

    def __init__(self, target: Any, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self._target, self._calls = target, calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        schema = getattr(attribute, "_schema_name", None)
        if schema is None:
            return Recorder(attribute, self._calls)  # a submodule: fn.decoders

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((schema, kwargs))
            return attribute(*args, **kwargs)

        return call


def operators(monkeypatch: pytest.MonkeyPatch, graph: Callable[..., Any], **arguments: Any) -> list[tuple[str, dict[str, Any]]]:
    """The operators ``graph`` is made of, built for GPU 0 (defining a pipeline needs no GPU)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for module in (letterbox, gop):
        monkeypatch.setattr(module, "fn", Recorder(fn, calls))
    graph(batch_size=2, num_threads=1, device_id=0, **dali.EXECUTOR, **arguments)
    return calls


def schema_problems(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    problems = []
    external = set(inspect.signature(ops.ExternalSource.__init__).parameters)
    for name, kwargs in calls:
        if name == "ExternalSource":
            problems += [f"{name}: no argument {key!r}" for key in kwargs if key not in external]
            continue
        schema = backend.GetSchema(name)
        device = kwargs.get("device", "cpu")
        if device not in schema.GetSupportedBackends():
            problems.append(f"{name}: no {device!r} backend")
        for key, value in kwargs.items():
            if key == "device":
                continue
            if not schema.HasArgument(key):
                problems.append(f"{name}: no argument {key!r}")
            elif type(value).__name__ == "DataNode" and not schema.IsTensorArgument(key):
                problems.append(f"{name}: {key!r} takes no per-sample tensor")
    return problems


@pytest.mark.parametrize(
    ("graph", "arguments"),
    [
        (letterbox.letterbox_normalize, {"device": "gpu", "scale": True, **LETTERBOX}),
        (letterbox.letterbox_normalize, {"device": "gpu", "scale": False, **LETTERBOX}),
        (gop.gop_decode, {"device": "mixed"}),
    ],
)
def test_every_argument_of_the_gpu_graphs_is_in_dalis_schema(monkeypatch: pytest.MonkeyPatch, graph, arguments) -> None:
    calls = operators(monkeypatch, graph, **arguments)
    assert len(calls) >= 2
    assert schema_problems(calls) == []


def test_the_schema_check_sees_a_wrong_argument() -> None:
    calls = [("Resize", {"device": "gpu", "resize_xx": 1.0}), ("decoders__Video", {"device": "gpu"}),
             ("ExternalSource", {"zero_copy": True})]
    assert schema_problems(calls) == [
        "Resize: no argument 'resize_xx'", "decoders__Video: no 'gpu' backend", "ExternalSource: no argument 'zero_copy'",
    ]


def test_the_executor_takes_a_stream_bound_run() -> None:
    """The GPU path runs its graphs with ``run(stream)``. Built as every graph is (``dali.build``),
    a run with a stream gets past the executor and stops only at the missing CUDA driver; the
    legacy executor the GPU path had refuses the call itself (and hangs on the next run)."""
    def graph(**executor: Any) -> Any:
        pipe = letterbox.letterbox_normalize(device="cpu", scale=False, batch_size=1, num_threads=1, device_id=None,
                                             **LETTERBOX, **executor)
        pipe.build()
        pipe.feed_input(letterbox.FRAMES, [np.zeros((8, 8, 3), np.uint8)])
        return pipe

    with pytest.raises(RuntimeError) as ours:
        dali.run(graph(**dali.EXECUTOR), stream=0)
    assert "legacy execution model" not in str(ours.value) and "CUDA" in str(ours.value)
    with pytest.raises(RuntimeError, match="Asynchronous outputs require legacy execution model"):
        graph(exec_async=False, exec_pipelined=False, prefetch_queue_depth=1).run(0)


DALI_CODE = ("graphs/letterbox.py", "graphs/gop.py", "dalistream/dali.py", "dalistream/engine/preprocess.py", "dalistream/decode/gop.py")


def _mypy(*paths: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    require(module_available("mypy"), "mypy missing: run scripts/setup.sh --test")
    command = [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent", "--check-untyped-defs",
               "--cache-dir", str(cwd / ".mypy_cache"), *paths]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_dali_code_type_checks_against_dalis_own_stubs() -> None:
    """DALI ships .pyi files for its operators and pipeline: a call DALI lacks fails here."""
    result = _mypy(*DALI_CODE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_type_check_sees_an_argument_dali_lacks(tmp_path: Path) -> None:
    wrong = tmp_path / "letterbox.py"
    wrong.write_text((ROOT / "graphs" / "letterbox.py").read_text().replace("resize_x=widths", "resize_xx=widths"))
    result = _mypy(str(wrong), cwd=tmp_path)
    assert result.returncode == 1 and 'Unexpected keyword argument "resize_xx"' in result.stdout
