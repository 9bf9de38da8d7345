"""Cameras changed while the service runs: the REST API's add and remove, SIGHUP's reload.

Every change goes through :class:`CameraControl`, which validates a camera exactly as the
config file's are, asks admission whether it fits, applies it to the runtime (the other cameras
never pause) and, when asked to, keeps the camera list in a state file beside the config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from dalistream import config as config_module
from dalistream.config import CameraConfig, Config, ConfigError
from dalistream.pipeline import capacity
from dalistream.pipeline.preflight import check_clip
from dalistream.pipeline.runtime import CameraExists, Runtime

log = structlog.get_logger(__name__)

# Whether one more camera fits beside those running: None, or the reason it does not.
Admission = Callable[[list[CameraConfig], CameraConfig], str | None]


def capacity_admission(runtime: Runtime) -> Admission:
    """Admission by the capacity plan (:mod:`dalistream.pipeline.capacity`): the cameras
    running now plus the candidate, priced with the cost table found at start-up."""
    tables = capacity.load_tables()

    def admit(running: list[CameraConfig], candidate: CameraConfig) -> str | None:
        config = dataclasses.replace(runtime.config, camera=tuple(running))
        return capacity.admission(capacity.plan_for(config, runtime.plan, tables=tables), candidate)

    return admit


class NotAdmitted(Exception):
    """The camera would not fit beside those running (and admission refuses)."""


def state_file(config_path: Path) -> Path:
    """Where ``--persist-cameras`` keeps the camera list: ``site.cameras.json`` beside ``site.toml``."""
    return config_path.with_name(f"{config_path.stem}.cameras.json")


def with_persisted_cameras(config: Config, path: Path) -> Config:
    """``config`` with the cameras saved in ``path`` (each validated as a ``[[camera]]`` table)
    instead of its own, when that file exists."""
    if not path.exists():
        return config
    try:
        tables = json.loads(path.read_text(encoding="utf-8"))["camera"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a camera state file ({exc})") from exc
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: camera: expected an array of tables")
    cameras = tuple(config_module.camera_from_mapping(t, path.parent, f"{path.name}: camera[{i}]") for i, t in enumerate(tables))
    changed = dataclasses.replace(config, camera=cameras)
    changed.validate()
    log.info("cameras from the state file", path=str(path), cameras=len(cameras))
    return changed


class CameraControl:
    """Applies camera changes to ``runtime``.

    ``config_path``: the config file (relative clip paths resolve against its folder; SIGHUP
    re-reads it). ``admission``: asked before any add; ``refuse`` turns its reason into
    :class:`NotAdmitted`, otherwise the reason is logged and the camera added anyway.
    ``persist``: write the camera list to :func:`state_file` after each change.
    """

    def __init__(self, runtime: Runtime, config_path: Path, *, admission: Admission, refuse: bool, persist: bool) -> None:
        self._runtime = runtime
        self._config_path = config_path
        self._admission = admission
        self._refuse = refuse
        self._persist = persist
        self._lock = asyncio.Lock()  # one removal or reload at a time

    def add(self, table: Mapping[str, Any]) -> CameraConfig:
        """Add the camera ``table`` describes; raises ConfigError (a bad table, naming the key),
        :class:`CameraExists` or :class:`NotAdmitted`."""
        camera = config_module.camera_from_mapping(table, self._config_path.parent)
        check_clip(camera, "camera")
        self._add(camera)
        self._save()
        return camera

    async def remove(self, camera: str) -> int:
        """Remove ``camera``; returns how many of its frames were analysed. KeyError when it is
        not running."""
        async with self._lock:
            final = await self._runtime.remove_camera(camera)
            self._save()
        return final.counts.get("frames_analysed", 0)

    async def reload(self) -> None:
        """Re-read the config file and apply its cameras: new ones added, missing ones removed,
        changed ones restarted. An invalid file changes nothing. Other sections need a restart."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        try:
            config = config_module.load(self._config_path)
            for index, camera in enumerate(config.camera):
                check_clip(camera, f"camera[{index}]")
        except ConfigError as exc:
            log.error("config reload refused; the running cameras are kept", path=str(self._config_path), error=str(exc))
            return
        running = {camera.id: camera for camera in self._runtime.cameras()}
        wanted = {camera.id: camera for camera in config.camera}
        sections = [f.name for f in dataclasses.fields(Config) if f.name != "camera" and getattr(config, f.name) != getattr(self._runtime.config, f.name)]
        if sections:
            log.warning("config reload: these sections changed and apply only after a restart", sections=sections)
        gone = [cid for cid, camera in running.items() if wanted.get(cid) != camera]
        for cid in gone:
            await self._runtime.remove_camera(cid)
        refused = []
        for cid, camera in wanted.items():
            if running.get(cid) == camera:
                continue
            try:
                self._add(camera)
            except NotAdmitted as exc:
                refused.append(cid)
                log.error("config reload: camera not admitted", camera=cid, reason=str(exc))
        log.info("config reloaded", removed=[c for c in gone if c not in wanted], changed=[c for c in gone if c in wanted],
                 added=[c for c in wanted if c not in running], refused=refused)
        self._save()

    def _add(self, camera: CameraConfig) -> None:
        running = self._runtime.cameras()
        if any(c.id == camera.id for c in running):
            raise CameraExists(f"camera {camera.id!r} is already running")
        reason = self._admission(running, camera)
        if reason is not None:
            if self._refuse:
                raise NotAdmitted(reason)
            log.warning("camera admitted beyond capacity (admission = \"warn\")", camera=camera.id, reason=reason)
        self._runtime.add_camera(camera)

    def _save(self) -> None:
        if not self._persist:
            return
        path = state_file(self._config_path)
        tables = [camera_table(camera) for camera in self._runtime.cameras()]
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # URLs may hold passwords
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"camera": tables}, out, indent=2)
        os.replace(temporary, path)


def camera_table(camera: CameraConfig) -> dict[str, Any]:
    """``camera`` as the ``[[camera]]`` table that makes it again: only keys that differ from
    the defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(CameraConfig)}
    table = {key: value for key, value in dataclasses.asdict(camera).items() if value != defaults[key]}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in table.items()}
