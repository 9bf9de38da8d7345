"""What cluster workers ask of Ray and whether nodes can give it, said in words; `check`'s
cluster table from plain nodes; a Ray failure as one line that is never empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_module

from dalistream import config as config_module
from dalistream.cluster.check import cluster_plan, summary
from dalistream.cluster.resources import NodeResources, fit, unschedulable, worker_ask
from dalistream.device import CPU, GPU, DevicePlan

def node(name: str, total: float, free: float, resource: str = "CPU") -> NodeResources:
    return NodeResources(name, {resource: total}, {resource: free})


def test_a_worker_that_fits_nowhere_says_who_holds_the_cluster():
    held = {"w1": {"CPU": 1.0}, "w2": {"CPU": 1.0}}
    assert unschedulable("w3", {"CPU": 1.0}, [node("a", 2.0, 0.0)], held) == \
        "w3 needs 1.0 CPU; the cluster has 2.0 CPUs, 2.0 taken by w1, w2"
    assert unschedulable("w3", {"CPU": 1.0}, [node("a", 2.0, 1.0)], held) is None


def test_what_others_hold_what_no_node_has_and_what_is_split_over_nodes_are_each_said():
    assert unschedulable("w2", {"CPU": 1.0}, [node("a", 2.0, 0.5)], {"w1": {"CPU": 1.0}}) == \
        "w2 needs 1.0 CPU; the cluster has 2.0 CPUs, 1.0 taken by w1, 0.5 by other Ray work"
    assert unschedulable("w1", {"CPU": 4.0}, [node("a", 2.0, 2.0), node("b", 3.0, 3.0)], {}) == \
        "w1 needs 4.0 CPUs; the cluster has 5.0 CPUs; no node has 4.0 at all (the largest has 3.0)"
    assert unschedulable("w3", {"CPU": 0.6}, [node("a", 1.0, 0.4), node("b", 1.0, 0.4)], {"w1": {"CPU": 0.6}, "w2": {"CPU": 0.6}}) == \
        "w3 needs 0.6 CPU; the cluster has 2.0 CPUs, 1.2 taken by w1, w2; 0.8 are free, but at most 0.4 on one node"
    assert unschedulable("w1", {"CPU": 1.0}, [node("gpu-box", 0.0, 0.0)], {}) == "w1 needs 1.0 CPU; the cluster has 0.0 CPU; no node has any CPU"


def test_a_gpu_worker_needs_its_share_and_a_cpu_on_the_same_node():
    cluster = config_module.ClusterConfig(workers_per_gpu=3)
    ask = worker_ask(cluster, GPU)
    assert ask == pytest.approx({"GPU": 1 / 3, "CPU": 1.0})
    gpu_node = NodeResources("g", {"GPU": 1.0, "CPU": 4.0}, {"GPU": 1.0, "CPU": 4.0})
    assert fit([(f"w{n}", ask) for n in range(1, 4)], [gpu_node]) == {"w1": None, "w2": None, "w3": None}  # 3 × 1/3 fit
    cpu_only = NodeResources("c", {"CPU": 8.0}, {"CPU": 8.0})
    busy_gpu = NodeResources("g", {"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 0.0})
    assert unschedulable("w1", ask, [cpu_only, busy_gpu], {}) == "w1 needs 0.33 GPU + 1.0 CPU on one node; no node has all of it free"
    assert worker_ask(cluster, CPU) == {"CPU": 1.0}


def test_fit_plays_ray_placing_workers_in_turn():
    verdicts = fit([("w1", {"CPU": 0.6}), ("w2", {"CPU": 0.6}), ("w3", {"CPU": 0.3})], [node("a", 1.0, 1.0)])
    assert verdicts == {"w1": None, "w2": "w2 needs 0.6 CPU; the cluster has 1.0 CPU, 0.6 taken by w1", "w3": None}


def site(tmp_path: Path, cluster: str, cameras: int) -> config_module.Config:
    path = tmp_path / "site.toml"
    path.write_text(f'[pipeline]\ndevice = "cpu"\n[model]\ninput = [640, 384]\n[cluster]\n{cluster}\n'
                    + "".join(f'[[camera]]\nid = "cam{n}"\nurl = "rtsp://camera-{n}/stream"\n' for n in range(cameras)))
    return config_module.load(path)


def test_the_cluster_plan_compares_asks_with_offers_and_places_cameras_by_capacity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DALISTREAM_CACHE", str(tmp_path / "cache"))  # the shipped costs: 0.2 cores a camera here
    config = site(tmp_path, "cpu_workers = 3\nworker_cpus = 0.6", cameras=5)
    plan = cluster_plan(config, DevicePlan(CPU, "test"), [NodeResources("this machine", {"CPU": 2.0}, {"CPU": 2.0})])
    assert plan["asked"] == {"CPU": 1.8, "workers": 3} and plan["offered"] == {"CPU": 2.0, "CPU_free": 2.0, "nodes": 1}
    assert [worker["verdict"] for worker in plan["workers"]] == ["fits"] * 3
    assert [len(worker["cameras"]) for worker in plan["workers"]] == [2, 2, 1]  # 2 × 0.2 within 80 % of 0.6 cores
    assert plan["cameras_without_room"] == [] and plan["verdict"] == "fits"

    small = cluster_plan(config, DevicePlan(CPU, "test"), [NodeResources("this machine", {"CPU": 1.0}, {"CPU": 1.0})])
    assert [worker["verdict"] for worker in small["workers"]] == ["fits", "pending", "pending"]
    assert small["cameras_without_room"] == ["cam2", "cam3", "cam4"] and small["verdict"] == "does not fit"
    assert summary(small).startswith("3 workers ask 1.8 CPU; this machine (a local Ray instance) offers 1 CPU (1 free) on 1 node; "
                                     "pending: w2: w2 needs 0.6 CPU; the cluster has 1.0 CPU, 0.6 taken by w1; w3: ")
    assert summary(small).endswith("; no room for cameras cam2, cam3, cam4")


def test_a_gpu_plan_asks_for_workers_per_gpu_the_cluster_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DALISTREAM_CACHE", str(tmp_path / "cache"))
    config = site(tmp_path, "workers_per_gpu = 2", cameras=3)
    nodes = [NodeResources("g", {"GPU": 2.0, "CPU": 8.0}, {"GPU": 2.0, "CPU": 8.0})]
    plan = cluster_plan(config, DevicePlan(GPU, "test"), nodes)
    assert plan["asked"] == {"GPU": 2.0, "CPU": 4.0, "workers": 4}
    assert [len(worker["cameras"]) for worker in plan["workers"]] == [1, 1, 1, 0] and plan["verdict"] == "fits"


def test_a_ray_failure_is_one_line_and_never_empty():
    from dalistream.cluster.ray_cluster import failure_reason

    ray_exceptions = require_module("ray.exceptions", "run scripts/setup.sh")
    task_error = ray_exceptions.RayTaskError("start", "Traceback (most recent call last): ...", TimeoutError())
    assert failure_reason(task_error.as_instanceof_cause()) == "TimeoutError (it gave no message)"
    assert failure_reason(ray_exceptions.RayTaskError("start", "tb", ValueError("model\n  missing"))) == "ValueError: model missing"
    died = RuntimeError('The actor died because of an error raised in its creation task, \x1b[36mray::Worker.__init__()\x1b[39m '
                        '(pid=1, ip=10.0.0.2)\n  File "worker.py", line 7, in __init__\n    raise ConfigError(...)\n'
                        "dalistream.config.ConfigError: model.onnx: /models/m.onnx does not exist")
    assert failure_reason(died) == ("RuntimeError: The actor died because of an error raised in its creation task: "
                                    "dalistream.config.ConfigError: model.onnx: /models/m.onnx does not exist")
    assert failure_reason(TimeoutError()) == "TimeoutError (it gave no message)"
