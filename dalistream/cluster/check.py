"""``check``'s ``cluster`` table: the Ray resources a ``[cluster]`` config asks for against what
the cluster offers (for ``address = ""``, this machine as a local Ray instance would see it),
which workers Ray could place and why not the others, and the cameras each placed worker would
take by capacity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from dalistream.config import Config
from dalistream.device import GPU, DevicePlan
from dalistream.pipeline.capacity import load_tables

from . import planner, ray_cluster, resources


def offered_nodes(address: str) -> list[resources.NodeResources]:
    """The nodes a coordinator with ``address`` would run on: this machine for ``""``, else the
    cluster's live nodes (joined and left again; :class:`~ray_cluster.JoinError` when it cannot)."""
    if not address:
        return [ray_cluster.local_resources()]
    ray_cluster.join(address)
    try:
        return ray_cluster.nodes()
    finally:
        ray.shutdown()


def cluster_plan(config: Config, plan: DevicePlan, nodes: Sequence[resources.NodeResources]) -> dict[str, Any]:
    """The table (see the module docstring); ``verdict`` is ``fits`` when every worker can be
    placed and every camera has room."""
    cluster = config.cluster
    if cluster is None:
        raise ValueError("the cluster plan needs a [cluster] table")
    ask = resources.worker_ask(cluster, plan.device)
    count = cluster.cpu_workers
    if plan.device == GPU:
        count = int(sum(node.total.get(resources.GPU_RESOURCE, 0.0) for node in nodes)) * cluster.workers_per_gpu
    ids = [f"w{n}" for n in range(1, count + 1)]
    verdicts = resources.fit([(worker, ask) for worker in ids], nodes)
    capacity = resources.worker_capacity(cluster, plan.device, len(config.camera))
    tables = load_tables()
    demands = [resources.camera_demand(config, plan, camera, tables) for camera in config.camera]
    placed = [planner.WorkerSlot(worker, capacity) for worker in ids if verdicts[worker] is None]
    placement, moves = planner.place(planner.Placement(), placed, demands)
    unplaced = [move.camera for move in moves if move.target is None]
    workers = []
    for worker in ids:
        entry: dict[str, Any] = {"id": worker, "resources": ask}
        if verdicts[worker] is None:
            load = placement.load(worker)
            entry |= {"verdict": "fits", "capacity_cores": round(capacity, 3), "load_cores": round(load, 3),
                      "cameras": list(placement.cameras_of(worker))}
        else:
            entry |= {"verdict": "pending", "reason": verdicts[worker]}
        workers.append(entry)
    return {
        "address": cluster.address or "this machine (a local Ray instance)",
        "asked": {resource: round(amount * count, 3) for resource, amount in ask.items()} | {"workers": count},
        "offered": {resource: _sum(nodes, resource, "total") for resource in ask}
                   | {f"{resource}_free": _sum(nodes, resource, "available") for resource in ask} | {"nodes": len(nodes)},
        "workers": workers,
        "cameras_without_room": unplaced,
        "verdict": "fits" if count and len(placed) == count and not unplaced else "does not fit",
    }


def summary(table: dict[str, Any]) -> str:
    """The table in one line, for the log."""
    pending = [f"{worker['id']}: {worker['reason']}" for worker in table["workers"] if worker["verdict"] == "pending"]
    asked, offered = table["asked"], table["offered"]
    kinds = [resource for resource in asked if resource != "workers"]
    asks = ", ".join(f"{asked[resource]:g} {resource}" for resource in kinds)
    offers = ", ".join(f"{offered[resource]:g} {resource} ({offered[resource + '_free']:g} free)" for resource in kinds)
    nodes = f"{offered['nodes']} node{'s' if offered['nodes'] != 1 else ''}"
    line = f"{asked['workers']} workers ask {asks}; {table['address']} offers {offers} on {nodes}"
    if pending:
        line += f"; pending: {'; '.join(pending)}"
    if table["cameras_without_room"]:
        line += f"; no room for cameras {', '.join(table['cameras_without_room'])}"
    return line


def _sum(nodes: Sequence[resources.NodeResources], resource: str, which: str) -> float:
    return round(sum(getattr(node, which).get(resource, 0.0) for node in nodes), 3)
