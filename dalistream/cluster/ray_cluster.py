"""This process and the Ray cluster: joining it the way Ray's own CLI does, and what the
coordinator reads from it (its nodes' resources, whether Ray has placed a worker, why a worker
failed).

Joining. Ray (2.52 on) protects a cluster with a token when ``RAY_AUTH_MODE=token`` is set where
it starts, and ``ray start --head`` turns that on by itself when the head has a token
(``~/.ray/auth_token``, as ``ray get-auth-token --generate`` writes it). A driver joining by an
explicit address gets no such help from ``ray.init``, so :func:`join` does what ``ray start``
does first: with ``RAY_AUTH_MODE`` unset and a token found where Ray looks for one
(``RAY_AUTH_TOKEN``, then the file ``RAY_AUTH_TOKEN_PATH`` names, then ``~/.ray/auth_token``), it
uses the token. Before ``ray.init`` it checks that something listens at the address and that the
cluster takes the token and runs this Ray and Python version, so every failed join is one
:class:`JoinError` line saying what to set, before any camera is contacted.

Several calls here use Ray's internals (``ray._private``, ``ray._raylet``): the token loader
``ray start`` asks, the GCS client ``ray.init`` connects with, Ray's own version check, and the
GCS tables ``ray.available_resources`` and ``ray status`` read. Ray offers no public API for them without
its dashboard; they are kept to this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

import ray
from ray.exceptions import AuthenticationError, RayTaskError

from .resources import NodeResources

PROBE_TIMEOUT_S = 5.0  # for a TCP connection to the cluster's address
TOKEN_SOURCES = ("the file ~/.ray/auth_token (copy the head's; `ray get-auth-token` prints it there), "
                 "RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH")


class JoinError(Exception):
    """This process could not join the Ray cluster; the message says why and what to set, on
    one line."""


def join(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (``""``: start a local one in
    this process; ``"auto"`` or ``"host:port"`` of the head's GCS). Raises :class:`JoinError`
    when it cannot (see the module docstring)."""
    if address:
        _use_token_if_found(address)
        gcs = _gcs_address(address)
        _listening(gcs, address)
        _admitted(gcs, address)
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise JoinError(f"cannot join {where}: {failure_reason(exc)}") from exc


def nodes() -> list[NodeResources]:
    """The live nodes, each with its resources in all and free now."""
    from ray._private.state import state

    available = state.available_resources_per_node()
    return [NodeResources(node, total, available.get(node, {})) for node, total in state.total_resources_per_node().items()]


def placed_pid(actor: Any) -> int:
    """The pid of the process Ray gave ``actor`` (an actor handle), 0 while Ray has placed it
    nowhere (it waits for resources)."""
    from ray._private.state import state

    return int(state.actor_table(actor._actor_id.hex()).get("Pid") or 0)


def local_resources() -> NodeResources:
    """What ``ray.init()`` would give a local Ray instance on this machine: its CPUs as Ray
    counts them (CPU affinity and cgroup quota) and its GPUs."""
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    gpus = get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators()
    total = {"CPU": float(get_num_cpus()), **({"GPU": float(gpus)} if gpus else {})}
    return NodeResources("this machine", total, total)


def failure_reason(error: BaseException) -> str:
    """Why a Ray call failed, in one line and never empty: a task's own exception (a worker's
    model that did not load) rather than Ray's wrapper and traceback; Ray's long help texts cut
    to their first sentence."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        error = error.cause
    text = error.message if isinstance(error, AuthenticationError) else str(error)
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if line.strip()]
    if len(lines) > 2 and any(line.startswith('File "') for line in lines):
        # Ray's text around a remote traceback (an actor whose creation failed): what it says
        # first, and the error itself, the traceback's last line.
        lines = [lines[0].split(",")[0] + ":", lines[-1]]
    text = " ".join(" ".join(lines).split())
    return f"{type(error).__name__}: {text[:300]}" if text else f"{type(error).__name__} (it gave no message)"


def _use_token_if_found(address: str) -> None:
    """``RAY_AUTH_MODE=token`` for this process when it is unset and Ray's own token loader
    finds a token (what ``ray start --head`` does, without its warning meant for a head)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    try:
        if os.environ.get("RAY_AUTH_MODE") is None and AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
            os.environ["RAY_AUTH_MODE"] = "token"
            Config.initialize("")  # Ray read its settings when it was imported
    except AuthenticationError as exc:  # e.g. RAY_AUTH_TOKEN_PATH names a file that cannot be read
        raise JoinError(f"cannot join the Ray cluster at {address}: {exc.message}; fix it or use {TOKEN_SOURCES}") from exc


def _gcs_address(address: str) -> str:
    """``host:port`` of the cluster's GCS (``"auto"``: the cluster ``ray start`` started on this
    machine, or ``RAY_ADDRESS``)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die(address)
    except (ConnectionError, ValueError) as exc:
        raise JoinError(f"cannot join the Ray cluster at {address}: {' '.join(str(exc).split())}") from exc


def _listening(host_port: str, address: str) -> None:
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        reason = "nothing listens there" if isinstance(exc, ConnectionRefusedError) else " ".join(str(exc).split())
        raise JoinError(f"cannot join the Ray cluster at {address}: {reason} ({host_port}); start the head there "
                        f"(`ray start --head --port {port}`) or set cluster.address to the address it printed") from exc


def _admitted(gcs: str, address: str) -> None:
    """The cluster takes this process's token (if it wants one) and runs this Ray and Python
    version: what ``ray.init`` finds out only after 20 s of retries, asked once."""
    from ray._common.usage.usage_lib import get_cluster_metadata
    from ray._private.utils import check_version_info
    from ray._raylet import AuthenticationMode, GcsClient, get_authentication_mode

    try:
        with _quiet_stderr():  # Ray's C++ client logs the refusal there too
            client = GcsClient(address=gcs)
        metadata = get_cluster_metadata(client)
    except AuthenticationError as exc:
        refused = "it refused this machine's token" if get_authentication_mode() == AuthenticationMode.TOKEN else \
            "it wants a token and this machine has none"
        raise JoinError(f"cannot join the Ray cluster at {address}: {refused} ({exc.message}); "
                        f"give this machine the cluster's token: {TOKEN_SOURCES}") from exc
    except Exception as exc:
        raise JoinError(f"cannot join the Ray cluster at {address}: {failure_reason(exc)}") from exc
    if not metadata:  # a head that never recorded its versions: ray.init checks nothing either
        return
    try:
        check_version_info(metadata, "this machine")
    except RuntimeError as exc:
        mismatch = re.sub(r"\s+", " ", str(exc)).strip()
        raise JoinError(f"cannot join the Ray cluster at {address}: {mismatch}; install the same Ray and Python "
                        f"versions on every machine") from exc


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (C++ logging bypasses ``sys.stderr``)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
