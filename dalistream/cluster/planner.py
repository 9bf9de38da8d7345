"""Which worker runs which camera, and which cameras move when workers die or return, or cameras
come and go: pure decisions from worker capacities, camera costs and the live workers.

Units are those of :mod:`dalistream.pipeline.capacity`: CPU cores. A worker's ``capacity`` is the
cores its cameras may use (the coordinator computes it as :attr:`CapacityPlan.limit` does, 80 %
of the worker's cores, so the headroom stays); a camera's ``cost`` is :meth:`CapacityPlan.cores`.
A worker's *share* is its load (the costs of its cameras) over its capacity.

A camera goes to the live worker whose share is lowest once it takes the camera (ties: worker
id), and only where the load stays within the capacity; so a worker with twice the capacity gets
about twice the load. A node that dies is its workers missing from ``workers``.

- :func:`place` keeps every camera on a live worker where it is, and places the others (new, or
  on a worker that died) largest first; a camera that fits nowhere is reported with
  ``target=None`` and stays unassigned until a later call finds it room. A camera whose worker
  died keeps that worker as its move's ``source`` until it runs again, however many calls later,
  so wherever it resumes it is a move from there.
- :func:`add` places one camera (the REST API), or says why no worker can hold it.
- :func:`rebalance` moves running cameras towards returned or idle workers, under the rule below.

Rebalance rule (no flapping). A camera moves from worker S (share ``s`` before, ``s'`` after)
to worker T (share ``t`` before, ``t'`` after) only when

1. T can hold it (load within capacity),
2. ``s' < s``: it lowers the source's share (a camera that costs nothing never moves),
3. ``s - t >= min_spread``: the imbalance is worth a camera restart, and
4. ``t' <= s'``: the target ends no more loaded than the source.

Then both changed shares end below ``s``, and T's was below it before. So every move makes the
list of shares, sorted high to low, strictly smaller (lexicographically): the entries above
``s`` stay, and one fewer worker stands at ``s``. There are finitely many assignments, so
repeated calls reach a fixed point and no assignment ever recurs; moving the camera straight
back would need ``s <= t``, which rule 4 rules out. It stops where every two workers differ by
less than ``min_spread``, or no camera of the more loaded one fits the other and leaves it at or
below the source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

MIN_SPREAD = 0.1  # of capacity: the least share gap between two workers that rebalancing acts on
MAX_MOVES = 4  # cameras rebalance moves per call (each move restarts the camera's stream)


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """A live worker and the CPU cores its cameras may use."""

    id: str
    capacity: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity) and self.capacity > 0):
            raise ValueError(f"worker {self.id}: capacity must be a positive number of cores; got {self.capacity!r}")


@dataclass(frozen=True, slots=True)
class CameraDemand:
    """A camera and what it costs, in CPU cores."""

    id: str
    cost: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cost) and self.cost >= 0):
            raise ValueError(f"camera {self.id}: cost must be a non-negative number of cores; got {self.cost!r}")


@dataclass(frozen=True, slots=True)
class Move:
    """A decision about one camera: ``source`` the worker it last ran on (None: it never ran),
    ``target`` None means no live worker can hold it (it is unassigned, and reported)."""

    camera: str
    source: str | None
    target: str | None


@dataclass(frozen=True)
class Placement:
    """Which worker runs each assigned camera (``assignment``: camera id → worker id), what
    each costs (``costs``: camera id → cores), and for unassigned cameras whose worker died the
    worker they left (``left``: camera id → worker id). Immutable; the planner returns new ones."""

    assignment: Mapping[str, str] = field(default_factory=dict)
    costs: Mapping[str, float] = field(default_factory=dict)
    left: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.assignment.keys() != self.costs.keys():
            raise ValueError("a placement needs the cost of every assigned camera, and no other")
        if self.assignment.keys() & self.left.keys():
            raise ValueError("a camera is either assigned or has left a worker, not both")
        object.__setattr__(self, "assignment", MappingProxyType(dict(self.assignment)))
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))
        object.__setattr__(self, "left", MappingProxyType(dict(self.left)))

    def load(self, worker: str) -> float:
        """Cores ``worker``'s cameras cost."""
        return math.fsum(self.costs[camera] for camera in self.cameras_of(worker))

    def room(self, worker: WorkerSlot) -> float:
        """Cores ``worker`` has left (negative when its cameras' costs grew past its capacity)."""
        return worker.capacity - self.load(worker.id)

    def cameras_of(self, worker: str) -> tuple[str, ...]:
        """``worker``'s cameras, by id."""
        return tuple(sorted(camera for camera, assigned in self.assignment.items() if assigned == worker))


def place(placement: Placement, workers: Sequence[WorkerSlot], cameras: Sequence[CameraDemand]) -> tuple[Placement, list[Move]]:
    """Place every camera of ``cameras`` (all the cameras the cluster runs) that is not on one of
    the live ``workers``: cameras on live workers never move (their costs are updated from
    ``cameras``); the others go largest first, each to the worker with the lowest share once it
    takes it. One :class:`Move` per camera placed or left unplaced, largest camera first.
    Raises ValueError when ``placement`` holds a camera missing from ``cameras`` (:func:`remove`
    it first) or ids repeat."""
    live = _by_id(workers, "worker")
    wanted = _by_id(cameras, "camera")
    strays = sorted((placement.assignment.keys() | placement.left.keys()) - wanted.keys())
    if strays:
        raise ValueError(f"the placement holds cameras not in cameras: {', '.join(strays)} (remove them first)")
    kept = {camera: worker for camera, worker in placement.assignment.items() if worker in live}
    costs = {camera: wanted[camera].cost for camera in kept}
    left = {}
    ledger = _Ledger(live.values(), kept, costs)
    moves = []
    for camera in sorted((camera for camera in cameras if camera.id not in kept), key=lambda camera: (-camera.cost, camera.id)):
        target = ledger.best_target(camera.cost)
        source = placement.assignment.get(camera.id, placement.left.get(camera.id))
        moves.append(Move(camera.id, source, target))
        if target is not None:
            ledger.put(camera.id, camera.cost, target)
            kept[camera.id], costs[camera.id] = target, camera.cost
        elif source is not None:
            left[camera.id] = source
    return Placement(kept, costs, left), moves


def add(placement: Placement, workers: Sequence[WorkerSlot], camera: CameraDemand) -> tuple[Placement, str | None]:
    """``placement`` with ``camera`` on the live worker with the lowest share once it takes it,
    and None; or ``placement`` unchanged and why no live worker can hold it. Raises ValueError
    when ``camera`` is already placed."""
    if camera.id in placement.assignment:
        raise ValueError(f"camera {camera.id} is already placed, on worker {placement.assignment[camera.id]}")
    ledger = _Ledger(_by_id(workers, "worker").values(), placement.assignment, placement.costs)
    target = ledger.best_target(camera.cost)
    if target is not None:
        return Placement({**placement.assignment, camera.id: target}, {**placement.costs, camera.id: camera.cost}, placement.left), None
    if not workers:
        return placement, f"adding {camera.id} needs {camera.cost:.2f} cores; no worker is live"
    roomiest = max(workers, key=lambda worker: (placement.room(worker), worker.id))
    return placement, (f"adding {camera.id} needs {camera.cost:.2f} cores; the most room on any of the {len(workers)} "
                       f"live workers is {placement.room(roomiest):.2f} of {roomiest.capacity:.2f} cores, on {roomiest.id}")


def remove(placement: Placement, camera: str) -> Placement:
    """``placement`` without ``camera``; unchanged when it does not hold it (a camera that
    never ran lives in the caller's camera list only)."""
    return Placement({id_: worker for id_, worker in placement.assignment.items() if id_ != camera},
                     {id_: cost for id_, cost in placement.costs.items() if id_ != camera},
                     {id_: worker for id_, worker in placement.left.items() if id_ != camera})


def rebalance(
    placement: Placement,
    workers: Sequence[WorkerSlot],
    *,
    now: float,
    last_change_at: float,
    rebalance_s: float,
    min_spread: float = MIN_SPREAD,
    max_moves: int = MAX_MOVES,
) -> tuple[Placement, list[Move]]:
    """Up to ``max_moves`` moves of running cameras between the live ``workers``, under the
    module's rebalance rule, once ``rebalance_s`` has passed since ``last_change_at`` (when a
    camera last moved or a worker joined or left, on the caller's clock, as ``now``);
    ``rebalance_s <= 0`` disables it. Each move takes the most loaded worker that has a camera
    to give, and its largest camera the rule lets go, to the allowed worker with the lowest
    share after.
    Cameras on workers not in ``workers`` stay as they are (:func:`place` moves them)."""
    if rebalance_s <= 0 or now - last_change_at < rebalance_s:
        return placement, []
    ledger = _Ledger(_by_id(workers, "worker").values(), placement.assignment, placement.costs)
    assignment = dict(placement.assignment)
    moves: list[Move] = []
    while len(moves) < max_moves and (move := ledger.rebalancing_move(min_spread)) is not None:
        ledger.put(move.camera, ledger.take(move.camera, move.source), move.target)
        assignment[move.camera] = move.target
        moves.append(move)
    return Placement(assignment, placement.costs, placement.left), moves


_Identified = TypeVar("_Identified", WorkerSlot, CameraDemand)


def _by_id(items: Iterable[_Identified], kind: str) -> dict[str, _Identified]:
    by_id: dict[str, _Identified] = {}
    for item in items:
        if item.id in by_id:
            raise ValueError(f"{kind} id {item.id} given twice")
        by_id[item.id] = item
    return by_id


class _Ledger:
    """The cameras on each live worker while one call plans. Loads are exact sums
    (:func:`math.fsum`, as :meth:`Placement.load`), so a fit here is a fit there."""

    def __init__(self, workers: Iterable[WorkerSlot], assignment: Mapping[str, str], costs: Mapping[str, float]) -> None:
        self.capacity = {worker.id: worker.capacity for worker in workers}
        self.cameras: dict[str, dict[str, float]] = {worker: {} for worker in self.capacity}
        for camera, worker in assignment.items():
            if worker in self.cameras:
                self.cameras[worker][camera] = costs[camera]

    def share(self, worker: str, *, plus: float | None = None, minus: str | None = None) -> float:
        """``worker``'s share, with a camera costing ``plus`` added or camera ``minus`` taken off."""
        costs = [cost for camera, cost in self.cameras[worker].items() if camera != minus]
        if plus is not None:
            costs.append(plus)
        return math.fsum(costs) / self.capacity[worker]

    def fits(self, worker: str, cost: float) -> bool:
        return math.fsum([*self.cameras[worker].values(), cost]) <= self.capacity[worker]

    def targets(self, cost: float, exclude: str | None = None) -> list[tuple[float, str]]:
        """The workers but ``exclude`` that can hold a camera costing ``cost``, as (share after
        taking it, id), lowest first."""
        return sorted((self.share(worker, plus=cost), worker) for worker in self.capacity
                      if worker != exclude and self.fits(worker, cost))

    def best_target(self, cost: float) -> str | None:
        """The worker with the lowest share once it holds ``cost`` (ties: id), or None."""
        targets = self.targets(cost)
        return targets[0][1] if targets else None

    def put(self, camera: str, cost: float, worker: str) -> None:
        self.cameras[worker][camera] = cost

    def take(self, camera: str, worker: str) -> float:
        return self.cameras[worker].pop(camera)

    def rebalancing_move(self, min_spread: float) -> Move | None:
        """The next move the rebalance rule allows, or None at the fixed point."""
        for source in sorted(self.capacity, key=lambda worker: (-self.share(worker), worker)):
            before = self.share(source)
            for camera, cost in sorted(self.cameras[source].items(), key=lambda item: (-item[1], item[0])):
                after = self.share(source, minus=camera)
                if after >= before:
                    break  # this camera and the smaller ones cost nothing that counts
                for target_after, target in self.targets(cost, exclude=source):
                    if target_after > after:
                        break
                    if before - self.share(target) >= min_spread:
                        return Move(camera, source, target)
        return None
