"""The detector's batch schedule, as a pure schedule: simulated host threads issue steps in
random interleavings under :class:`IssueOrder`, a simulated device runs each stage's stream
in issue order with waits on reused events, and every buffer is written only after its last
reader finished; with two buffers the three stages overlap. Then the threaded
:class:`Sequencer` on the host streams (the CPU): order, ownership and failures."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest

from dalistream.engine.schedule import INFERENCE, POSTPROCESS, PREPROCESS, STAGES, BatchSchedule, IssueOrder, Sequencer, Signal, Step
from dalistream.engine.streams import HostStreams


class Timeline:
    """A run simulated: host threads issue steps; the device runs them. ``start``/``end``
    per (stage, batch), and per step the batch whose record each wait found in the event."""

    def __init__(self) -> None:
        self.start: dict[tuple[str, int], float] = {}
        self.end: dict[tuple[str, int], float] = {}
        self.found: list[tuple[Signal, int]] = []  # (signal waited for, batch of the record found)


def simulate(
    schedule: BatchSchedule,
    batches: int,
    threads: int,
    seed: int,
    durations: dict[str, float],
    order: IssueOrder | None = None,
    jitter: float = 0.5,
) -> Timeline:
    rng = random.Random(seed)
    order = order or IssueOrder(schedule)
    buffers = schedule.buffers
    recorded: dict[tuple[str, int], int] = {}  # (stage, event index) -> batch of the last record
    stream_free = dict.fromkeys(STAGES, 0.0)
    timeline = Timeline()
    work: list[list[Step]] = [[] for _ in range(threads)]  # each thread's remaining steps
    while order.batches < batches or any(work):
        runnable = [t for t in range(threads) if (work[t] and order.may_issue(work[t][0])) or (not work[t] and order.batches < batches)]
        assert runnable, "deadlock: no thread can issue"
        thread = rng.choice(runnable)
        if not work[thread]:
            work[thread] = list(order.open())
            continue
        step = work[thread].pop(0)
        ready = stream_free[step.stage]
        for signal in (*step.waits, *step.host_waits):  # a host wait delays the issue: the same for the device
            found = recorded.get((signal.stage, signal.batch % buffers))
            timeline.found.append((signal, -1 if found is None else found))
            if found is not None:
                ready = max(ready, timeline.end[(signal.stage, found)])
        timeline.start[(step.stage, step.batch)] = ready
        timeline.end[(step.stage, step.batch)] = stream_free[step.stage] = ready + durations[step.stage] * rng.uniform(1 - jitter, 1 + jitter)
        recorded[(step.stage, step.buffer)] = step.batch
        order.done(step)
    return timeline


def ownership_violations(timeline: Timeline, buffers: int, batches: int) -> list[str]:
    problems = []
    start, end = timeline.start, timeline.end
    for k in range(batches):
        if start[(INFERENCE, k)] < end[(PREPROCESS, k)]:
            problems.append(f"batch {k} inferred before its buffer was written")
        if start[(POSTPROCESS, k)] < end[(INFERENCE, k)]:
            problems.append(f"batch {k} postprocessed before its inference ended")
        if k >= buffers and start[(PREPROCESS, k)] < end[(INFERENCE, k - buffers)]:
            problems.append(f"buffer {k % buffers} rewritten by batch {k} while batch {k - buffers} was reading it")
    problems += [f"{signal} waited for an older record (batch {found})" for signal, found in timeline.found if found < signal.batch]
    problems += [f"{signal} waited for a newer record (batch {found})" for signal, found in timeline.found if found > signal.batch]
    return problems


EVEN = dict.fromkeys(STAGES, 1.0)


@pytest.mark.parametrize("buffers", [1, 2, 3])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_every_interleaving_keeps_buffers_owned(buffers: int, threads: int) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        durations = {stage: rng.uniform(0.2, 3.0) for stage in STAGES}
        timeline = simulate(BatchSchedule(buffers), 30, threads, seed, durations)
        assert ownership_violations(timeline, buffers, 30) == [], f"seed {seed}"


def test_two_buffers_overlap_the_three_stages() -> None:
    """Batch k+1 preprocessed while k infers and k-1 is reduced to faces."""
    timeline = simulate(BatchSchedule(2), 40, 3, 1, EVEN, jitter=0.0)
    overlapping = 0
    for k in range(1, 39):
        a = max(timeline.start[(PREPROCESS, k + 1)], timeline.start[(INFERENCE, k)], timeline.start[(POSTPROCESS, k - 1)])
        b = min(timeline.end[(PREPROCESS, k + 1)], timeline.end[(INFERENCE, k)], timeline.end[(POSTPROCESS, k - 1)])
        overlapping += b > a
    assert overlapping >= 30, overlapping
    one_buffer = simulate(BatchSchedule(1), 40, 3, 1, EVEN, jitter=0.0)
    assert one_buffer.end[(POSTPROCESS, 39)] > 1.3 * timeline.end[(POSTPROCESS, 39)]  # one buffer serialises preprocess and inference


class NoHostWait(BatchSchedule):
    def steps(self, batch: int) -> tuple[Step, Step, Step]:
        pre, infer, post = super().steps(batch)
        return Step(pre.stage, pre.batch, pre.buffer, pre.waits, ()), infer, post


class IssueWithoutWaiting(IssueOrder):
    def may_issue(self, step: Step) -> bool:
        return self._next[step.stage] == step.batch  # the stage's turn only


class RecordTooSoon(IssueOrder):
    def may_issue(self, step: Step) -> bool:
        return self._next[step.stage] == step.batch and all(map(self.issued, (*step.waits, *step.host_waits)))


def test_the_check_catches_a_broken_schedule_and_a_broken_issue_order() -> None:
    slow_inference = {PREPROCESS: 1.0, INFERENCE: 5.0, POSTPROCESS: 1.0}
    broken = simulate(NoHostWait(2), 10, 3, 0, slow_inference)
    assert any("rewritten" in problem for problem in ownership_violations(broken, 2, 10))
    def problems(order: type[IssueOrder]) -> list[str]:
        schedule = BatchSchedule(2)
        return [p for seed in range(20) for p in ownership_violations(simulate(schedule, 20, 3, seed, EVEN, order(schedule)), 2, 20)]

    assert any("older record" in problem for problem in problems(IssueWithoutWaiting))
    assert any("newer record" in problem for problem in problems(RecordTooSoon))


def test_steps_of_a_batch() -> None:
    schedule = BatchSchedule(2)
    pre, infer, post = schedule.steps(5)
    assert (pre.buffer, pre.host_waits, pre.waits) == (1, (Signal(INFERENCE, 3),), ())
    assert (infer.waits, post.waits) == ((Signal(PREPROCESS, 5),), (Signal(INFERENCE, 5),))
    assert schedule.steps(1)[0].host_waits == ()  # the first use of each buffer waits for nobody
    with pytest.raises(ValueError):
        BatchSchedule(0)
    order = IssueOrder(schedule)
    with pytest.raises(RuntimeError, match="out of turn"):
        order.done(order.open()[1])  # inference before preprocess


class Recorder:
    """Host stages that log when each step starts and ends, and check buffer ownership live."""

    def __init__(self, buffers: int, fail: int | None = None) -> None:
        self.buffers = buffers
        self.fail = fail
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []  # (event, stage, batch)
        self.readers: dict[int, int] = {}  # buffer -> batch whose inference is reading it
        self.problems: list[str] = []

    def stage(self, name: str):
        def run(step: Step, value: object) -> object:
            with self.lock:
                self.log.append(("start", name, step.batch))
                if name == PREPROCESS and step.buffer in self.readers:
                    self.problems.append(f"batch {step.batch} writes buffer {step.buffer} while {self.readers[step.buffer]} reads it")
                if name == INFERENCE:
                    self.readers[step.buffer] = step.batch
            time.sleep(random.uniform(0, 0.003))
            with self.lock:
                if name == INFERENCE:
                    self.readers.pop(step.buffer)
                if step.batch == self.fail and name == INFERENCE:
                    raise ValueError("a stage failed")
                self.log.append(("end", name, step.batch))
            return (value or 0) + 1

        return run


def run_threads(sequencer: Sequencer, recorder: Recorder, threads: int, per_thread: int) -> list[object]:
    results: list[object] = []

    def worker() -> None:
        for _ in range(per_thread):
            try:
                results.append(sequencer(*(recorder.stage(stage) for stage in STAGES)))
            except ValueError as exc:
                results.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the sequencer deadlocked"
    return results


def test_threads_pipeline_batches_in_order_on_the_host() -> None:
    recorder = Recorder(2)
    results = run_threads(Sequencer(BatchSchedule(2), HostStreams()), recorder, 3, 20)
    assert results == [3] * 60  # each batch went through its three stages, in order
    assert recorder.problems == []
    for stage in STAGES:
        assert [batch for event, name, batch in recorder.log if name == stage and event == "start"] == list(range(60))
    started: defaultdict[int, set[str]] = defaultdict(set)
    concurrent = 0
    for event, name, batch in recorder.log:  # stages of different batches ran at the same time
        if event == "start":
            concurrent += any(other != batch and started[other] for other in started)
            started[batch].add(name)
        else:
            started[batch].discard(name)
    assert concurrent > 0


def test_a_failed_batch_passes_its_steps_over_and_the_others_go_on() -> None:
    recorder = Recorder(2, fail=7)
    results = run_threads(Sequencer(BatchSchedule(2), HostStreams()), recorder, 3, 10)
    failures = [result for result in results if isinstance(result, ValueError)]
    assert len(failures) == 1 and results.count(3) == 29
    assert ("start", POSTPROCESS, 7) not in recorder.log and ("start", POSTPROCESS, 8) in recorder.log


def test_cuda_streams_carry_out_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CuPy's API (``fake_gpu``: calls logged, no GPU): each step on its stage's stream,
    waiting on the events its signals were recorded into, the host syncing only for a
    buffer's reuse; busy time added up per stage."""
    import fake_gpu

    cupy = fake_gpu.fake_cupy()
    fake_gpu.install(monkeypatch, cupy)
    from dalistream.engine.streams import CudaStreams

    device = fake_gpu.device_of(cupy)
    streams = CudaStreams(2)
    names = {stage: device.name(streams.streams[stage]) for stage in STAGES}
    event = {(stage, index): device.name(streams.event(Signal(stage, index))) for stage in STAGES for index in range(2)}
    sequencer = Sequencer(BatchSchedule(2), streams)
    current: list[tuple[str, str | None]] = []
    for _ in range(3):
        sequencer(*(lambda step, _, s=stage: current.append((s, device.name(cupy.cuda.get_current_stream()))) for stage in STAGES))
    assert current == [(stage, names[stage]) for _ in range(3) for stage in STAGES]  # each stage on its own stream
    calls = [call for call in device.calls if call[0] != "record" or call[2] in event.values()]  # the signal records
    pre, infer, post = names[PREPROCESS], names[INFERENCE], names[POSTPROCESS]
    assert calls == [
        ("record", pre, event[(PREPROCESS, 0)]),
        ("wait", infer, event[(PREPROCESS, 0)]), ("record", infer, event[(INFERENCE, 0)]),
        ("wait", post, event[(INFERENCE, 0)]), ("record", post, event[(POSTPROCESS, 0)]),
        ("record", pre, event[(PREPROCESS, 1)]),
        ("wait", infer, event[(PREPROCESS, 1)]), ("record", infer, event[(INFERENCE, 1)]),
        ("wait", post, event[(INFERENCE, 1)]), ("record", post, event[(POSTPROCESS, 1)]),
        ("synchronize", event[(INFERENCE, 0)]), ("record", pre, event[(PREPROCESS, 0)]),  # buffer 0 again: its reader done
        ("wait", infer, event[(PREPROCESS, 0)]), ("record", infer, event[(INFERENCE, 0)]),
        ("wait", post, event[(INFERENCE, 0)]), ("record", post, event[(POSTPROCESS, 0)]),
    ]
    assert streams.busy_ms() == dict.fromkeys(STAGES, 6.0)  # three steps each, start to end 2 ms on the fake clock
