"""The cluster planner: placing cameras on workers by capacity, failover, admission over REST and
rebalancing without flapping, driven with plain workers, costs and times."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dalistream.cluster.planner import CameraDemand, Move, Placement, WorkerSlot, add, place, rebalance, remove

EMPTY = Placement()


def cameras(count: int, cost: float, prefix: str = "cam") -> list[CameraDemand]:
    return [CameraDemand(f"{prefix}{n:02d}", cost) for n in range(count)]


def shares(placement: Placement, workers: list[WorkerSlot]) -> dict[str, float]:
    return {worker.id: placement.load(worker.id) / worker.capacity for worker in workers}


def within_capacity(placement: Placement, workers: list[WorkerSlot]) -> bool:
    return all(placement.load(worker.id) <= worker.capacity for worker in workers)


def settle(placement: Placement, workers: list[WorkerSlot], calls: int, **limits) -> tuple[Placement, int]:
    """Rebalance once per call, each call ``rebalance_s`` after the last, until a call moves
    nothing; returns the placement and how many calls moved something."""
    for moving_calls in range(calls):
        placement, moves = rebalance(placement, workers, now=10.0 * (moving_calls + 1), last_change_at=10.0 * moving_calls,
                                     rebalance_s=10.0, **limits)
        if not moves:
            return placement, moving_calls
    raise AssertionError(f"rebalance still moves cameras after {calls} calls")


# Placing


def test_a_worker_with_twice_the_capacity_gets_twice_the_load_not_round_robin():
    workers = [WorkerSlot("small", 2.0), WorkerSlot("large", 4.0)]
    placement, moves = place(EMPTY, workers, cameras(30, 0.1))
    assert all(move.source is None and move.target is not None for move in moves)
    assert placement.load("small") == pytest.approx(1.0, abs=0.1)  # round-robin would give 1.5 and 1.5
    assert placement.load("large") == pytest.approx(2.0, abs=0.1)
    assert len(placement.cameras_of("small")) + len(placement.cameras_of("large")) == 30


def test_largest_cameras_are_placed_first_each_where_the_share_ends_lowest():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 2.0)]
    demands = [CameraDemand("small", 0.2), CameraDemand("big", 0.9), CameraDemand("mid", 0.5)]
    placement, moves = place(EMPTY, workers, demands)
    # big: a 0.9 vs b 0.45 → b; mid: a 0.5 vs b 0.7 → a; small: a 0.7 vs b 0.55 → b
    assert moves == [Move("big", None, "b"), Move("mid", None, "a"), Move("small", None, "b")]
    assert placement.cameras_of("b") == ("big", "small")
    assert placement.room(workers[1]) == pytest.approx(0.9)


def test_nothing_moves_when_nothing_failed_not_even_for_a_new_empty_worker():
    workers = [WorkerSlot("a", 2.0), WorkerSlot("b", 2.0)]
    demands = cameras(8, 0.3)
    placement, _ = place(EMPTY, workers, demands)
    again, moves = place(placement, workers, demands)
    assert (again, moves) == (placement, [])
    joined, moves = place(placement, [*workers, WorkerSlot("c", 2.0)], demands)
    assert (joined, moves) == (placement, [])  # rebalance's business, not place's


def test_a_dead_workers_cameras_and_only_those_move_to_survivors_with_room():
    workers = [WorkerSlot("a", 2.0), WorkerSlot("b", 2.0), WorkerSlot("c", 2.0)]
    demands = cameras(9, 0.3)
    placement, _ = place(EMPTY, workers, demands)
    orphans = placement.cameras_of("b")
    assert len(orphans) == 3
    survivors = [workers[0], workers[2]]
    failed_over, moves = place(placement, survivors, demands)
    assert sorted(move.camera for move in moves) == list(orphans)
    assert {move.source for move in moves} == {"b"}
    assert {move.target for move in moves} <= {"a", "c"}
    for camera, worker in placement.assignment.items():
        if worker != "b":
            assert failed_over.assignment[camera] == worker
    assert within_capacity(failed_over, survivors)
    assert set(failed_over.assignment) == {camera.id for camera in demands}


def test_a_dead_nodes_workers_all_fail_over_and_what_does_not_fit_is_reported():
    node1 = [WorkerSlot("n1-w1", 1.0), WorkerSlot("n1-w2", 1.0)]
    node2 = [WorkerSlot("n2-w1", 1.0), WorkerSlot("n2-w2", 1.0)]
    demands = cameras(8, 0.4)
    placement, _ = place(EMPTY, node1 + node2, demands)  # two cameras on each worker (0.8 of 1.0)
    failed_over, moves = place(placement, node1, demands)
    assert len(moves) == 4 and {move.source for move in moves} == {"n2-w1", "n2-w2"}
    assert [move.target for move in moves].count(None) == 4  # survivors have 0.2 left each: no 0.4 fits
    assert set(failed_over.assignment) == set(placement.cameras_of("n1-w1") + placement.cameras_of("n1-w2"))


def test_unplaceable_cameras_are_reported_every_time_and_placed_when_a_worker_returns():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    demands = cameras(3, 0.6)
    placement, moves = place(EMPTY, workers, demands)
    assert moves == [Move("cam00", None, "a"), Move("cam01", None, "b"), Move("cam02", None, None)]
    assert "cam02" not in placement.assignment
    again, moves = place(placement, workers, demands)
    assert (again, moves) == (placement, [Move("cam02", None, None)])
    back, moves = place(placement, [*workers, WorkerSlot("c", 1.0)], demands)
    assert moves == [Move("cam02", None, "c")]
    assert back.assignment["cam02"] == "c"


def test_a_failed_over_camera_without_room_is_a_move_from_its_dead_worker_wherever_it_resumes():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    demands = cameras(2, 0.6)
    placement, _ = place(EMPTY, workers, demands)
    orphan = placement.cameras_of("b")[0]
    failed_over, moves = place(placement, workers[:1], demands)
    assert moves == [Move(orphan, "b", None)]
    assert orphan not in failed_over.assignment and failed_over.left == {orphan: "b"}
    still, moves = place(failed_over, workers[:1], demands)  # calls later, still no room: still from b
    assert moves == [Move(orphan, "b", None)] and still == failed_over
    resumed, moves = place(still, [workers[0], WorkerSlot("c", 1.0)], demands)
    assert moves == [Move(orphan, "b", "c")]
    assert resumed.assignment[orphan] == "c" and resumed.left == {}
    assert remove(still, orphan).left == {}


def test_costs_of_running_cameras_follow_the_camera_list_without_moving_them():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    placement, _ = place(EMPTY, workers, cameras(2, 0.3))
    grown, moves = place(placement, workers, cameras(2, 0.9))
    assert moves == [] and grown.assignment == placement.assignment
    assert grown.load("a") == pytest.approx(0.9)


def test_placing_is_deterministic_whatever_the_input_order():
    workers = [WorkerSlot(f"w{n}", 1.0 + n % 3) for n in range(5)]
    demands = [CameraDemand(f"cam{n}", round(0.1 + (n * 7 % 5) * 0.15, 2)) for n in range(25)]
    expected = place(EMPTY, workers, demands)
    shuffler = random.Random(7)
    for _ in range(10):
        shuffled_workers, shuffled_cameras = workers[:], demands[:]
        shuffler.shuffle(shuffled_workers)
        shuffler.shuffle(shuffled_cameras)
        assert place(EMPTY, shuffled_workers, shuffled_cameras) == expected


def test_misuse_stops_with_a_message():
    workers = [WorkerSlot("a", 1.0)]
    placement, _ = place(EMPTY, workers, cameras(2, 0.1))
    with pytest.raises(ValueError, match="not in cameras: cam01"):
        place(placement, workers, cameras(1, 0.1))
    with pytest.raises(ValueError, match="worker id a given twice"):
        place(EMPTY, workers * 2, [])
    with pytest.raises(ValueError, match="camera id x given twice"):
        place(EMPTY, workers, [CameraDemand("x", 0.1)] * 2)
    with pytest.raises(ValueError, match="worker b: capacity"):
        WorkerSlot("b", 0.0)
    with pytest.raises(ValueError, match="camera y: cost"):
        CameraDemand("y", float("nan"))
    with pytest.raises(ValueError, match="cost of every assigned camera"):
        Placement({"x": "a"}, {})


# Adding and removing one camera (REST)


def test_a_camera_added_over_rest_lands_where_there_is_most_room():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 2.0)]
    placement = Placement({"x": "a", "y": "b"}, {"x": 0.5, "y": 0.8})
    added, refused = add(placement, workers, CameraDemand("new", 0.2))
    assert refused is None
    assert added.assignment["new"] == "b"  # b ends at 0.5 of its capacity, a would at 0.7
    assert added.cameras_of("b") == ("new", "y")
    assert placement.cameras_of("b") == ("y",)  # the input is left as it was


def test_a_camera_no_worker_can_hold_is_refused_with_the_reason():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 2.0)]
    placement = Placement({"x": "a", "y": "b"}, {"x": 0.5, "y": 0.8})
    unchanged, refused = add(placement, workers, CameraDemand("huge", 1.5))
    assert unchanged == placement
    assert refused == "adding huge needs 1.50 cores; the most room on any of the 2 live workers is 1.20 of 2.00 cores, on b"
    assert add(EMPTY, [], CameraDemand("lonely", 0.1)) == (EMPTY, "adding lonely needs 0.10 cores; no worker is live")
    with pytest.raises(ValueError, match="camera x is already placed, on worker a"):
        add(placement, workers, CameraDemand("x", 0.1))


def test_removing_a_camera_frees_its_room_and_an_unknown_one_changes_nothing():
    placement = Placement({"x": "a", "y": "a"}, {"x": 0.5, "y": 0.25})
    removed = remove(placement, "x")
    assert removed.assignment == {"y": "a"}
    assert removed.load("a") == 0.25
    assert remove(removed, "never-placed") == removed


# Rebalancing


def returned_node() -> tuple[list[WorkerSlot], Placement]:
    """Twelve cameras on a and b, and c just back and empty."""
    workers = [WorkerSlot("a", 2.0), WorkerSlot("b", 2.0)]
    placement, _ = place(EMPTY, workers, cameras(12, 0.25))
    return [*workers, WorkerSlot("c", 2.0)], placement


def test_rebalance_waits_rebalance_s_after_the_last_change_and_zero_disables_it():
    workers, placement = returned_node()
    assert rebalance(placement, workers, now=100.0, last_change_at=0.0, rebalance_s=0.0) == (placement, [])
    assert rebalance(placement, workers, now=29.9, last_change_at=0.0, rebalance_s=30.0) == (placement, [])
    moved, moves = rebalance(placement, workers, now=30.0, last_change_at=0.0, rebalance_s=30.0)
    assert moves and all(move.target == "c" for move in moves)
    assert moved.cameras_of("c") == tuple(sorted(move.camera for move in moves))


def test_rebalance_fills_a_returned_node_then_holds_still():
    workers, placement = returned_node()
    assert shares(placement, workers) == {"a": 0.75, "b": 0.75, "c": 0.0}
    balanced, moving_calls = settle(placement, workers, calls=5)
    assert moving_calls == 1  # four moves in one call: 0.5 of capacity everywhere
    assert shares(balanced, workers) == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert rebalance(balanced, workers, now=1e6, last_change_at=0.0, rebalance_s=10.0) == (balanced, [])


def test_rebalance_moves_at_most_max_moves_per_call():
    workers, placement = returned_node()
    _, moves = rebalance(placement, workers, now=10.0, last_change_at=0.0, rebalance_s=10.0, max_moves=1)
    assert moves == [Move("cam00", "a", "c")]
    _, calls = settle(placement, workers, calls=10, max_moves=1)
    assert calls == 4


def test_rebalance_never_swaps_a_camera_that_would_only_move_the_hot_spot():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    placement = Placement({"x": "a", "y": "a", "z": "b"}, {"x": 0.3, "y": 0.3, "z": 0.3})
    # a at 0.6, b at 0.3: moving x would leave a at 0.3 and b at 0.6, and the next call would move it back
    assert rebalance(placement, workers, now=10.0, last_change_at=0.0, rebalance_s=1.0) == (placement, [])


def test_rebalance_leaves_an_imbalance_under_min_spread_alone():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    placement = Placement({f"a{n}": "a" for n in range(18)} | {f"b{n}": "b" for n in range(16)},
                          {**{f"a{n}": 0.03 for n in range(18)}, **{f"b{n}": 0.03 for n in range(16)}})
    assert rebalance(placement, workers, now=1.0, last_change_at=0.0, rebalance_s=1.0) == (placement, [])  # 0.54 v 0.48
    evened, moves = rebalance(placement, workers, now=1.0, last_change_at=0.0, rebalance_s=1.0, min_spread=0.05)
    assert moves == [Move("a0", "a", "b")]
    assert evened.load("a") == evened.load("b")


def test_rebalance_keeps_cameras_of_workers_it_is_not_given():
    workers = [WorkerSlot("a", 1.0), WorkerSlot("b", 1.0)]
    placement = Placement({"x": "a", "y": "a", "orphan": "dead"}, {"x": 0.4, "y": 0.4, "orphan": 0.1})
    moved, moves = rebalance(placement, workers, now=1.0, last_change_at=0.0, rebalance_s=1.0)
    assert moves == [Move("x", "a", "b")]
    assert moved.assignment == {"x": "b", "y": "a", "orphan": "dead"}


def test_rebalancing_is_deterministic_whatever_the_worker_order():
    workers, placement = returned_node()
    expected = rebalance(placement, workers, now=1.0, last_change_at=0.0, rebalance_s=1.0)
    assert rebalance(placement, workers[::-1], now=1.0, last_change_at=0.0, rebalance_s=1.0) == expected


# Properties

worker_sets = st.lists(st.floats(min_value=0.25, max_value=8.0), min_size=1, max_size=6).map(
    lambda capacities: [WorkerSlot(f"w{n}", capacity) for n, capacity in enumerate(capacities)])
camera_sets = st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=30).map(
    lambda costs: [CameraDemand(f"cam{n}", cost) for n, cost in enumerate(costs)])


def check_placed(placement: Placement, moves: list[Move], workers: list[WorkerSlot], demands: list[CameraDemand]) -> None:
    assert within_capacity(placement, workers)
    assert set(placement.assignment.values()) <= {worker.id for worker in workers}
    unplaced = {move.camera for move in moves if move.target is None}
    assert unplaced.isdisjoint(placement.assignment)
    assert unplaced | set(placement.assignment) == {camera.id for camera in demands}
    again, moves = place(placement, workers, demands)
    assert again == placement
    assert all(move.source == placement.left.get(move.camera) and move.target is None for move in moves)
    assert {move.camera for move in moves} == unplaced


@settings(deadline=None)
@given(worker_sets, camera_sets)
def test_placing_stays_within_capacity_reports_every_camera_and_is_then_a_no_op(workers, demands):
    placement, moves = place(EMPTY, workers, demands)
    check_placed(placement, moves, workers, demands)


@settings(deadline=None)
@given(worker_sets, camera_sets, st.data())
def test_failing_over_moves_only_the_dead_workers_cameras(workers, demands, data):
    placement, _ = place(EMPTY, workers, demands)
    survivors = data.draw(st.lists(st.sampled_from(workers), unique=True), label="survivors")
    failed_over, moves = place(placement, survivors, demands)
    check_placed(failed_over, moves, survivors, demands)
    live = {worker.id for worker in survivors}
    for camera, worker in placement.assignment.items():
        if worker in live:
            assert failed_over.assignment[camera] == worker
    assert {move.camera for move in moves} == {camera.id for camera in demands} - {
        camera for camera, worker in placement.assignment.items() if worker in live}


@settings(deadline=None)
@given(worker_sets, worker_sets, camera_sets, st.floats(min_value=0.0, max_value=0.3))
def test_rebalancing_lowers_the_sorted_shares_each_move_and_reaches_a_fixed_point(first, joined, demands, min_spread):
    workers = first + [WorkerSlot(f"j{n}", worker.capacity) for n, worker in enumerate(joined)]
    placement, _ = place(EMPTY, first, demands)  # then more workers join, empty

    def descending() -> list[float]:
        return sorted(shares(placement, workers).values(), reverse=True)

    for call in range(1000):
        before = descending()
        placement, moves = rebalance(placement, workers, now=float(call + 1), last_change_at=float(call), rebalance_s=1.0,
                                     min_spread=min_spread, max_moves=1)
        if not moves:
            break
        assert descending() < before  # the potential the no-flap rule rests on
        assert within_capacity(placement, workers)
    else:
        raise AssertionError("no fixed point after 1000 moves")
    assert rebalance(placement, workers, now=1e9, last_change_at=0.0, rebalance_s=1.0, min_spread=min_spread) == (placement, [])


# --- edges found by mutation testing (scripts/mutation.sh planner) -------------------------------


def test_argument_checks_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^camera c: cost must be a non-negative number of cores; got -1\.0$"):
        CameraDemand("c", -1.0)
    with pytest.raises(ValueError, match=r"^a placement needs the cost of every assigned camera, and no other$"):
        Placement({"c": "w"}, {})
    placement = Placement({"c": "w"}, {"c": 0.5})
    with pytest.raises(TypeError):
        placement.assignment["d"] = "w"  # type: ignore[index]
    with pytest.raises(TypeError):
        placement.costs["d"] = 1.0  # type: ignore[index]
    strays = Placement({"x": "w", "y": "w"}, {"x": 0.1, "y": 0.1})
    with pytest.raises(ValueError, match=r"^the placement holds cameras not in cameras: x, y \(remove them first\)$"):
        place(strays, [WorkerSlot("w", 1.0)], [])
    twice = [WorkerSlot("w", 1.0), WorkerSlot("w", 2.0)]
    with pytest.raises(ValueError, match=r"^worker id w given twice$"):
        add(Placement(), twice, CameraDemand("c", 0.1))
    with pytest.raises(ValueError, match=r"^worker id w given twice$"):
        rebalance(Placement(), twice, now=100.0, last_change_at=0.0, rebalance_s=1.0)


def test_a_camera_that_fills_a_worker_exactly_fits() -> None:
    placement, refused = add(Placement(), [WorkerSlot("w", 0.5)], CameraDemand("c", 0.5))
    assert refused is None and placement.assignment == {"c": "w"}


def rebalanced(assignment: dict[str, str], costs: dict[str, float], capacity: dict[str, float], **options) -> list[Move]:
    workers = [WorkerSlot(worker, cores) for worker, cores in capacity.items()]
    options = {"now": 100.0, "last_change_at": 0.0, "rebalance_s": 30.0, "max_moves": 1} | options
    return rebalance(Placement(assignment, costs), workers, **options)[1]


def test_rebalance_waits_rebalance_s_since_the_last_change() -> None:
    crowded = ({"a": "A", "b": "A"}, {"a": 0.4, "b": 0.4}, {"A": 1.0, "B": 1.0})
    assert rebalanced(*crowded, now=130.0, last_change_at=110.0) == []
    assert rebalanced(*crowded, now=140.0, last_change_at=110.0) == [Move("a", "A", "B")]


def test_rebalance_moves_the_largest_camera_that_helps_ties_by_name() -> None:
    assert rebalanced({"a": "A", "b": "A"}, {"a": 0.2, "b": 0.3}, {"A": 1.0, "B": 10.0}) == [Move("b", "A", "B")]
    assert rebalanced({"b": "A", "a": "A"}, {"b": 0.3, "a": 0.3}, {"A": 1.0, "B": 10.0}) == [Move("a", "A", "B")]


def test_rebalance_tries_smaller_cameras_and_other_workers_and_acts_on_exactly_min_spread() -> None:
    # b (0.5) would leave A below where it puts B; a (0.25) does not, and the spread is exactly 0.5
    quarter = ({"a": "A", "b": "A", "c": "B"}, {"a": 0.25, "b": 0.5, "c": 0.25}, {"A": 1.0, "B": 1.0})
    assert rebalanced(*quarter, min_spread=0.5) == [Move("a", "A", "B")]
    # A, the most loaded, has nothing to give (big fits only on C, where it would be as crowded;
    # z costs nothing); B, the next, does
    layout = {"z": "A", "big": "A", "c1": "B", "c2": "B"}, {"z": 0.0, "big": 0.9, "c1": 0.25, "c2": 0.25}
    assert rebalanced(*layout, {"A": 1.0, "B": 1.0, "C": 1.0}) == [Move("c1", "B", "C")]


def test_cameras_that_left_a_worker_are_kept_by_add_remove_and_rebalance() -> None:
    with pytest.raises(ValueError, match=r"^a camera is either assigned or has left a worker, not both$"):
        Placement({"c": "w"}, {"c": 0.1}, {"c": "v"})
    gone = Placement({}, {}, {"g": "v", "h": "v"})
    with pytest.raises(TypeError):
        gone.left["i"] = "v"  # type: ignore[index]
    workers = [WorkerSlot("w", 1.0)]
    added, _ = add(gone, workers, CameraDemand("c", 0.1))
    assert added.left == {"g": "v", "h": "v"}
    assert remove(added, "g").left == {"h": "v"}
    crowded = Placement({"a": "A", "b": "A"}, {"a": 0.4, "b": 0.4}, {"g": "v"})
    moved, moves = rebalance(crowded, [WorkerSlot("A", 1.0), WorkerSlot("B", 1.0)], now=100.0, last_change_at=0.0, rebalance_s=30.0)
    assert moves and moved.left == {"g": "v"}
