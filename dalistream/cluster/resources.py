"""What cluster workers ask of Ray and whether the cluster's nodes can give it: pure decisions
from plain numbers, so a worker Ray cannot place is said at once, with the reason in words; and
what workers and cameras are worth in the placement plan (:mod:`~dalistream.cluster.planner`).

A worker is one Ray actor that holds its resources for its life: on the CPU device plan
``cluster.worker_cpus`` CPUs; on the GPU its share of one GPU (``1 / cluster.workers_per_gpu``) and
the one CPU Ray reserves for any actor that names a resource. Ray places an actor on one node
that has all of it free, or keeps it waiting until one has. :func:`unschedulable` says why
none has (``w3 needs 1.0 CPU; the cluster has 2.0 CPUs, 2.0 taken by w1, w2``); :func:`fit`
plays the same decision for ``check``, worker after worker, on what the nodes offer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from dalistream.config import CameraConfig, ClusterConfig, Config
from dalistream.device import GPU, DevicePlan
from dalistream.pipeline.capacity import FITS_SHARE, CostTable, plan_for

from .planner import CameraDemand

CPU_RESOURCE, GPU_RESOURCE = "CPU", "GPU"  # Ray's names
_EPSILON = 1e-9  # Ray keeps resources to 4 decimals; a share of 1/3 must still fit three times


@dataclass(frozen=True, slots=True)
class NodeResources:
    """One Ray node: its resources in all (``total``) and free now (``available``)."""

    id: str
    total: Mapping[str, float] = field(default_factory=dict)
    available: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", MappingProxyType(dict(self.total)))
        object.__setattr__(self, "available", MappingProxyType(dict(self.available)))

    def holds(self, ask: Mapping[str, float]) -> bool:
        """All of ``ask`` is free here."""
        return all(self.available.get(resource, 0.0) + _EPSILON >= amount for resource, amount in ask.items())

    def taking(self, ask: Mapping[str, float]) -> NodeResources:
        """This node once ``ask`` is taken from what is free."""
        available = dict(self.available)
        for resource, amount in ask.items():
            available[resource] = available.get(resource, 0.0) - amount
        return NodeResources(self.id, self.total, available)


def worker_ask(cluster: ClusterConfig, device: str) -> dict[str, float]:
    """The Ray resources one worker holds (the actor's ``num_cpus`` / ``num_gpus``)."""
    if device == GPU:
        return {GPU_RESOURCE: 1 / cluster.workers_per_gpu, CPU_RESOURCE: 1.0}
    return {CPU_RESOURCE: cluster.worker_cpus}


def worker_capacity(cluster: ClusterConfig, device: str, cameras: int) -> float:
    """The cores a worker's cameras may use in the placement plan: :data:`FITS_SHARE` of its
    CPUs on the CPU; on the GPU, where there is no cost model, one per camera (so GPU workers
    are balanced by camera count)."""
    return FITS_SHARE * (cluster.worker_cpus if device != GPU else max(cameras, 1))


def camera_demand(config: Config, plan: DevicePlan, camera: CameraConfig, tables: Sequence[CostTable]) -> CameraDemand:
    """A camera's cost in cores by the capacity plan (1 per camera where there is no cost
    model, e.g. on the GPU: then workers are balanced by camera count)."""
    capacity = plan_for(dataclasses.replace(config, camera=(camera,)), plan, tables=tables)
    return CameraDemand(camera.id, capacity.cores(capacity.cameras[0]) if capacity.costs is not None else 1.0)


def unschedulable(worker: str, ask: Mapping[str, float], nodes: Sequence[NodeResources],
                  held: Mapping[str, Mapping[str, float]]) -> str | None:
    """Why Ray cannot place ``worker`` (asking ``ask``) on any of the live ``nodes`` now, in
    words; None when one node has all of it free. ``held``: what each of the coordinator's
    placed workers holds, by worker id (named in the reason; the rest is other Ray work)."""
    if any(node.holds(ask) for node in nodes):
        return None
    short = next((resource for resource, amount in ask.items() if not any(node.holds({resource: amount}) for node in nodes)), None)
    needs = " + ".join(_quantity(amount, resource) for resource, amount in ask.items())
    if short is None:  # each resource is free somewhere, never all on one node
        return f"{worker} needs {needs} on one node; no node has all of it free"
    amount = ask[short]
    total = math.fsum(node.total.get(short, 0.0) for node in nodes)
    free = math.fsum(max(node.available.get(short, 0.0), 0.0) for node in nodes)
    holders = {holder: resources[short] for holder, resources in held.items() if resources.get(short, 0.0) > 0}
    ours = math.fsum(holders.values())
    taken = [f"{_amount(ours)} taken by {', '.join(holders)}"] if holders else []
    if (others := total - free - ours) > 0.0005:
        taken.append(f"{_amount(others)} by other Ray work")
    reason = ", ".join([f"{worker} needs {needs}; the cluster has {_quantity(total, short)}", *taken])
    largest = max((node.total.get(short, 0.0) for node in nodes), default=0.0)
    if largest <= 0:
        reason += f"; no node has any {short}"
    elif largest + _EPSILON < amount:
        reason += f"; no node has {_amount(amount)} at all (the largest has {_amount(largest)})"
    elif free + _EPSILON >= amount:
        most = max(node.available.get(short, 0.0) for node in nodes)
        reason += f"; {_amount(free)} are free, but at most {_amount(most)} on one node"
    return reason


def fit(workers: Sequence[tuple[str, Mapping[str, float]]], nodes: Sequence[NodeResources]) -> dict[str, str | None]:
    """Ray's placement played in order: each worker (id, ask) on the first node that has its
    ask free, which then has that much less. Returns each worker's id → None where it was
    placed, or why it stays pending (:func:`unschedulable`)."""
    nodes = list(nodes)
    held: dict[str, Mapping[str, float]] = {}
    verdicts: dict[str, str | None] = {}
    for worker, ask in workers:
        index = next((i for i, node in enumerate(nodes) if node.holds(ask)), None)
        if index is None:
            verdicts[worker] = unschedulable(worker, ask, nodes, held)
            continue
        nodes[index] = nodes[index].taking(ask)
        held[worker] = ask
        verdicts[worker] = None
    return verdicts


def _amount(value: float) -> str:
    """1.0, 0.25, 2.5: two decimals at most, one at least."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _quantity(value: float, resource: str) -> str:
    """1.0 CPU, 2.0 CPUs, 0.5 GPU."""
    return f"{_amount(value)} {resource}{'s' if value > 1 else ''}"
