import pytest
from hypothesis import given
from hypothesis import strategies as st

from dalistream.pipeline.batching import Batcher
from dalistream.pipeline.sampling import IdleWatch, Sampler, stagger


def taken(fps: float, pts_list, phase: float = 0.0) -> list[float]:
    sampler = Sampler(fps, phase)
    return [pts for pts in pts_list if sampler.take(pts)]


def test_25fps_sampled_to_5fps_by_pts():
    pts = [i / 25 for i in range(250)]
    chosen = taken(5.0, pts)
    assert len(chosen) == 50
    assert chosen[:3] == pytest.approx([0.0, 0.2, 0.4])


def test_irregular_and_lossy_timestamps_keep_the_rate():
    # 30 fps with every third frame lost and jitter: still 5 per second of stream time.
    pts = [i / 30 + (0.004 if i % 2 else -0.004) for i in range(300) if i % 3]
    assert len(taken(5.0, pts)) == pytest.approx(50, abs=1)


def test_source_slower_than_detect_fps_takes_everything():
    assert len(taken(5.0, [i / 2 for i in range(20)])) == 20


def test_backwards_jump_restarts():
    pts = [i / 25 for i in range(50)] + [i / 25 for i in range(50)]
    assert len(taken(5.0, pts)) == 20


def test_reset_takes_the_next_frame_whatever_its_pts():
    sampler = Sampler(5.0)
    assert sampler.take(0.0) and not sampler.take(0.1)
    sampler.reset()
    assert sampler.take(0.1) and not sampler.take(0.15)


@given(st.lists(st.floats(0, 1e5, allow_nan=False), min_size=1, max_size=300).map(sorted), st.floats(0.5, 30),
       st.floats(0, 1, exclude_max=True))
def test_never_more_than_one_per_slot(pts, fps, phase):
    chosen = taken(fps, pts, phase)
    assert chosen[0] == pts[0]
    slots = [int(p * fps + phase + 1e-6) for p in chosen]
    assert len(slots) == len(set(slots))


def test_a_phase_moves_the_slot_boundaries_earlier_by_that_share_of_a_slot():
    pts = [i / 25 for i in range(50)]
    # Boundaries at (k - 0.5) / 5 s: 0.1, 0.3, …; the first frame is taken whatever its slot.
    assert taken(5.0, pts, 0.5) == pytest.approx([0.0] + [0.12 + i / 5 for i in range(10)])
    assert taken(5.0, pts, 0.9) == pytest.approx([0.0] + [0.04 + i / 5 for i in range(10)])
    sampler = Sampler(5.0, 0.5)
    assert [p for p in pts[:6] if sampler.take(p)] == pytest.approx([0.0, 0.12])
    sampler.retarget(1.0)  # 0.12 is in the 1 fps slot [-0.5, 0.5): the next is at 0.5 s
    assert [p for p in pts[6:30] if sampler.take(p)] == pytest.approx([0.52])
    for phase in (-0.1, 1.0):
        with pytest.raises(ValueError, match=rf"^phase must be in \[0, 1\), got {phase}$"):
            Sampler(5.0, phase)


@pytest.mark.parametrize("cameras", [2, 3, 6, 10, 20, 70])
def test_staggered_phases_split_a_slot_into_nearly_even_gaps(cameras):
    phases = sorted(stagger(i) for i in range(cameras))
    gaps = [b - a for a, b in zip(phases, phases[1:])] + [1 + phases[0] - phases[-1]]
    assert stagger(0) == 0.0 and all(0 <= p < 1 for p in phases)
    # Evenly spread would be 1/N each: none is under half of that, none over twice.
    assert 0.5 / cameras < min(gaps) and max(gaps) < 2 / cameras, gaps


def test_batch_ready_on_size_or_age():
    batcher = Batcher(max_batch=3, max_wait_s=0.02, queue_size=2)
    batcher.push("a", 1, now=0.0)
    assert not batcher.ready(0.01)
    assert batcher.deadline() == pytest.approx(0.02)
    assert batcher.ready(0.02)
    batcher.push("b", 2, now=0.015)
    batcher.push("c", 3, now=0.016)
    assert batcher.ready(0.016)
    assert sorted(batcher.take()) == [1, 2, 3]
    assert len(batcher) == 0 and batcher.deadline() is None


def test_drop_oldest_per_camera_is_reported():
    batcher = Batcher(max_batch=8, max_wait_s=0.02, queue_size=2)
    assert batcher.push("a", "a0", 0.0) is None
    assert batcher.push("a", "a1", 0.1) is None
    assert batcher.push("a", "a2", 0.2) == "a0"
    assert batcher.push("b", "b0", 0.3) is None
    assert len(batcher) == 3 and (batcher.queued("a"), batcher.queued("b"), batcher.queued("z")) == (2, 1, 0)
    assert batcher.take() == ["a1", "b0", "a2"]
    assert batcher.queued("a") == 0


def test_the_camera_whose_item_waited_longest_goes_first_whatever_the_items():
    batcher = Batcher(max_batch=1, max_wait_s=0.0, queue_size=2)
    batcher.push("late", "a", now=1.0)
    batcher.push("early", "z", now=0.0)
    assert batcher.take() == ["z"]


@pytest.mark.parametrize("args", [(0, 0.0, 1), (1, 0.0, 0), (1, -0.001, 1)])
def test_batcher_rejects_an_empty_batch_or_queue_and_a_negative_wait(args):
    with pytest.raises(ValueError, match=r"^max_batch and queue_size must be >= 1 and max_wait_s >= 0$"):
        Batcher(*args)
    assert len(Batcher(1, 0.0, 1)) == 0


def test_round_robin_keeps_a_busy_camera_from_starving_others():
    batcher = Batcher(max_batch=4, max_wait_s=0.0, queue_size=10)
    for i in range(8):
        batcher.push("busy", f"busy{i}", now=i * 0.001)
    batcher.push("quiet1", "q1", now=0.5)
    batcher.push("quiet2", "q2", now=0.6)
    assert batcher.take() == ["busy0", "q1", "q2", "busy1"]


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers()), max_size=60), st.integers(1, 5), st.integers(1, 6))
def test_everything_pushed_is_taken_or_dropped(pushes, queue_size, max_batch):
    batcher = Batcher(max_batch=max_batch, max_wait_s=0.0, queue_size=queue_size)
    items = [(camera, i) for i, (camera, _) in enumerate(pushes)]
    dropped = [d for camera, item in items if (d := batcher.push(camera, (camera, item), 0.0)) is not None]
    out = []
    while len(batcher):
        batch = batcher.take()
        assert 0 < len(batch) <= max_batch
        out.extend(batch)
    assert sorted(out + dropped) == sorted((c, i) for c, i in items)
    assert all(sum(1 for c, _ in out if c == cam) <= queue_size for cam in "abcd")


def test_a_stream_slower_than_detect_fps_is_taken_whole_and_reported_once():
    sampler = Sampler(5.0)
    assert all(sampler.take(i / 3) for i in range(9))  # 3 fps: every frame, none skipped
    assert sampler.slow_stream() is None  # nine in a row are not yet a run
    assert all(sampler.take(i / 3) for i in range(9, 12))
    assert sampler.slow_stream() == pytest.approx(3.0)
    assert sampler.slow_stream() is None
    restarted = Sampler(5.0)
    assert all(restarted.take(i / 3) for i in [*range(8), *range(9)])  # a restart before the tenth
    assert restarted.slow_stream() is None  # the run starts again at the restart
    assert restarted.take(3.0) and restarted.slow_stream() == pytest.approx(3.0)
    at_threshold = Sampler(9.473684210526317)  # 0.95 of it is 9.0 exactly
    assert all(at_threshold.take(i / 9) for i in range(20)) and at_threshold.slow_stream() is None
    fast = Sampler(5.0)
    assert sum(fast.take(i / 25) for i in range(250)) == 50
    assert fast.slow_stream() is None
    exact = Sampler(5.0)
    assert all(exact.take(i / 5) for i in range(50)) and exact.slow_stream() is None


def test_cameras_held_by_another_worker_are_left_out():
    batcher = Batcher(max_batch=2, max_wait_s=0.05, queue_size=4)
    batcher.push("a", "a0", 0.0)
    batcher.push("a", "a1", 0.01)
    batcher.push("b", "b0", 0.02)
    assert batcher.waiting({"a"}) == 1 and batcher.waiting() == 3
    assert batcher.deadline({"a"}) == pytest.approx(0.07)
    assert not batcher.ready(0.06, {"a"})  # a's frames are due, but a is held elsewhere
    assert batcher.ready(0.07, {"a"})
    assert batcher.take({"a"}) == ["b0"]
    assert not batcher.ready(1.0, {"a"}) and batcher.deadline({"a"}) is None
    assert batcher.take() == ["a0", "a1"]


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=60), st.integers(1, 4))
def test_two_workers_never_hold_one_camera_and_keep_its_order(steps, max_batch):
    """Pushes interleaved with two workers that take (skipping what the other holds) and
    finish: a camera is in at most one batch at a time, and leaves in the order it came."""
    batcher = Batcher(max_batch=max_batch, max_wait_s=0.0, queue_size=100)
    held: list[list[tuple[str, int]]] = [[], []]
    out: list[tuple[str, int]] = []
    for i, (camera, work) in enumerate(steps):
        batcher.push(camera, (camera, i), 0.0)
        if work:
            worker = i % 2
            out.extend(held[worker])
            other = {c for c, _ in held[1 - worker]}
            held[worker] = batcher.take(other)
            assert not other & {c for c, _ in held[worker]}
    out.extend(held[0] + held[1])
    for camera in "abcd":
        mine = [i for c, i in out if c == camera]
        assert mine == sorted(mine)


def test_retarget_changes_the_rate_from_the_next_slot_of_the_new_one():
    sampler = Sampler(5.0)
    pts = [i / 25 for i in range(250)]
    first = [p for p in pts[:51] if sampler.take(p)]  # 0.0 … 2.0 at 5 fps
    sampler.retarget(1.0)  # 2.0, just taken, opens the 1 fps slot [2, 3): the next is 3.0
    slow = [p for p in pts[51:126] if sampler.take(p)]
    assert first[-1] == 2.0 and slow == pytest.approx([3.0, 4.0, 5.0])
    sampler.retarget(5.0)  # 5.0, just taken, is slot 25 at 5 fps: the next is 5.2
    fast = [p for p in pts[126:151] if sampler.take(p)]
    assert fast == pytest.approx([5.2, 5.4, 5.6, 5.8, 6.0])
    with pytest.raises(ValueError, match=r"^fps must be > 0, got 0$"):
        sampler.retarget(0)
    fresh = Sampler(5.0)
    fresh.retarget(1.0)  # before any frame: the first one is taken
    assert fresh.take(0.3) and not fresh.take(0.9)


def test_fps_must_be_positive():
    for fps in (0, -1.0):
        with pytest.raises(ValueError, match=f"^fps must be > 0, got {fps}$"):
            Sampler(fps)


def test_idle_watch_goes_idle_after_a_faceless_stretch_and_wakes_at_a_face():
    watch = IdleWatch(10.0)
    assert watch.idle is False
    assert watch.analysed(100.0, 0) is None  # the first frame starts the count
    assert watch.analysed(109.9, 0) is None
    assert watch.analysed(110.0, 0) is True and watch.idle
    assert watch.analysed(120.0, 0) is None  # said once
    assert watch.analysed(121.0, 2) is False and watch.idle is False
    assert watch.analysed(130.0, 0) is None  # 9 s since the face
    assert watch.analysed(131.0, 0) is True
    busy = IdleWatch(10.0)
    assert all(busy.analysed(100.0 + t, 1) is None for t in range(30)) and not busy.idle


def test_a_camera_with_a_live_face_track_never_goes_idle():
    """Frames where the detector found nothing while a face is still tracked count as a face."""
    watch = IdleWatch(1.0)
    assert watch.analysed(0.0, 1) is None
    assert all(watch.analysed(0.2 * step, 0, tracked=1) is None for step in range(1, 50))
    assert watch.analysed(10.0, 0) is None  # the track ended: the count starts from its last frame
    assert watch.analysed(11.0, 0) is True
    assert watch.analysed(11.2, 0, tracked=1) is False  # a face tracked again wakes it
