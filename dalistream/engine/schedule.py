"""How a detector's batches move through its three stages, pure: which buffer each step owns,
what it waits for, and in what order steps may be issued. The streams that carry it out are
in :mod:`.streams`.

Every batch goes through ``preprocess`` (the DALI graph writes the model input into one of
``buffers`` input buffers, one graph each), ``inference`` (the engine reads that buffer) and
``postprocess`` (thresholds and NMS on the engine's outputs; the kept faces come back to the
host). Each stage runs on a stream of its own (on the GPU; on the CPU all three are the host)
and each step ends in a signal (a CUDA event): batch ``k``'s inference waits for its
preprocess signal and its postprocess for its inference signal; buffer ``k % buffers`` is
written again by batch ``k + buffers``'s preprocess only after batch ``k``'s inference, its
reader, has finished — a host wait, as the DALI graph is run from the host. With two
buffers, batch ``k + 1`` is preprocessed while ``k`` infers and ``k - 1`` is reduced to faces.

Signals live in ``buffers`` events per stage, reused: batch ``k``'s records into event
``k % buffers`` of its stage. So a wait must be issued after the record it is for (else it
would find an older one: too little ordering) and before that event is recorded again (else
it would find a newer one: a needless stall). :class:`IssueOrder` is that rule: a step is
issued once the same stage's previous batch and every step it waits for were, and once every
wait on its event's previous record was.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

PREPROCESS, INFERENCE, POSTPROCESS = "preprocess", "inference", "postprocess"
STAGES = (PREPROCESS, INFERENCE, POSTPROCESS)


@dataclass(frozen=True, slots=True, order=True)
class Signal:
    """The end of ``stage`` for ``batch`` (event ``batch % buffers`` of that stage's stream)."""

    stage: str
    batch: int


@dataclass(frozen=True, slots=True)
class Step:
    """One stage of one batch: the input buffer it touches, what its stream waits for before it
    runs (``waits``) and what the host waits for before issuing it (``host_waits``)."""

    stage: str
    batch: int
    buffer: int
    waits: tuple[Signal, ...]
    host_waits: tuple[Signal, ...]

    @property
    def signal(self) -> Signal:
        return Signal(self.stage, self.batch)

    @property
    def writes_buffer(self) -> bool:
        return self.stage == PREPROCESS

    @property
    def reads_buffer(self) -> bool:
        return self.stage == INFERENCE


class BatchSchedule:
    """The steps of each batch with ``buffers`` input buffers (1: each batch's preprocess
    waits for the previous batch's inference; 2: double-buffered)."""

    def __init__(self, buffers: int) -> None:
        if buffers < 1:
            raise ValueError(f"buffers must be at least 1, got {buffers}")
        self.buffers = buffers

    def steps(self, batch: int) -> tuple[Step, Step, Step]:
        buffer = batch % self.buffers
        previous_reader = (Signal(INFERENCE, batch - self.buffers),) if batch >= self.buffers else ()
        return (
            Step(PREPROCESS, batch, buffer, (), previous_reader),
            Step(INFERENCE, batch, buffer, (Signal(PREPROCESS, batch),), ()),
            Step(POSTPROCESS, batch, buffer, (Signal(INFERENCE, batch),), ()),
        )


class IssueOrder:
    """The issuing rule of a schedule, pure (see the module docstring)."""

    def __init__(self, schedule: BatchSchedule) -> None:
        self.schedule = schedule
        self.batches = 0  # batches opened
        self._next = dict.fromkeys(STAGES, 0)  # per stage, the next batch it issues
        self._waiting: Counter[Signal] = Counter()  # per signal, the waits on it not yet issued

    def open(self) -> tuple[Step, Step, Step]:
        """A new batch (numbered in the order they arrive): its steps."""
        steps = self.schedule.steps(self.batches)
        self.batches += 1
        self._waiting.update(signal for step in steps for signal in (*step.waits, *step.host_waits))
        return steps

    def issued(self, signal: Signal) -> bool:
        return self._next[signal.stage] > signal.batch

    def may_issue(self, step: Step) -> bool:
        previous_record = Signal(step.stage, step.batch - self.schedule.buffers)
        return (
            self._next[step.stage] == step.batch
            and all(map(self.issued, (*step.waits, *step.host_waits)))
            and not self._waiting[previous_record]
        )

    def done(self, step: Step) -> None:
        """``step`` was issued (or passed over: its batch failed before it)."""
        if not self.may_issue(step):
            raise RuntimeError(f"{step.signal} issued out of turn")
        self._next[step.stage] += 1
        self._waiting.subtract((*step.waits, *step.host_waits))
        self._waiting -= Counter()  # drop the zeros


class StageStreams(Protocol):
    """Where a step runs (see :mod:`.streams`)."""

    def on(self, step: Step) -> AbstractContextManager[None]:
        """Around ``step``'s work: its host waits, its stream waiting for its signals and
        current, and its own signal recorded when the work is queued."""


class Sequencer:
    """Runs batches through a :class:`BatchSchedule` on :class:`StageStreams`, from any number
    of threads: each stage takes batches in the order they were opened, and a step is issued
    only as :class:`IssueOrder` allows, so callers on several threads pipeline their batches."""

    def __init__(self, schedule: BatchSchedule, streams: StageStreams) -> None:
        self.schedule = schedule
        self.streams = streams
        self._order = IssueOrder(schedule)
        self._changed = threading.Condition()

    def __call__(self, *stages: Callable[[Step, Any], Any]) -> Any:
        """One batch: ``stages[i]`` (preprocess, inference, postprocess) is called with its step
        and what the one before returned (None first), on its step's stream. After a failure the batch's other
        steps are passed over, their turns still taken so later batches go on, and the failure
        is raised."""
        with self._changed:
            steps = self._order.open()
        value: Any = None
        failure: BaseException | None = None
        for step, stage in zip(steps, stages, strict=True):
            with self._changed:
                self._changed.wait_for(lambda: self._order.may_issue(step))  # noqa: B023 (called at once)
            try:
                if failure is None:
                    with self.streams.on(step):
                        value = stage(step, value)
            except BaseException as exc:  # passed over below, raised at the end
                failure = exc
            finally:
                with self._changed:
                    self._order.done(step)
                    self._changed.notify_all()
        if failure is not None:
            raise failure
        return value
