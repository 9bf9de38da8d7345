"""The HTTP surface (``[http] listen``): metrics, health, the camera API, snapshots, the status page.

=====================================  =====================================================
``GET /``                              status page (cameras, state, fps, drops, snapshots)
``GET /metrics``                       Prometheus text format
``GET /health``                        overall ok/degraded/down and every camera (503 if down)
``GET /live``, ``GET /ready``          for orchestrators (``/ready``: model loaded, a camera streams)
``GET /api/v1/cameras[/{id}]``         configuration (passwords hidden), state and totals
``POST /api/v1/cameras``               add a camera: a JSON ``[[camera]]`` table
``DELETE /api/v1/cameras/{id}``        remove a camera
``GET /cameras/{id}/latest.jpg``       last analysed frame, faces drawn
``GET /api/v1/cameras/{id}/faces``     face tracks in view and recently ended, with crop URLs
``GET /faces/{id}/{date}/{t}.jpg``   a face track's best crop (``{t}``: its track)
=====================================  =====================================================

POST and DELETE need ``Authorization: Bearer <token>`` when ``http.token_env`` names one.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
import json
from importlib import resources
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from dalistream.config import ConfigError, HttpConfig
from dalistream.pipeline.runtime import CameraExists, Runtime

from .control import CameraControl, NotAdmitted
from .health import DOWN, camera_config_json, camera_json, health, ready
from .snapshots import Snapshots

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a camera table is a few hundred bytes


class HttpService:
    """The aiohttp application for one runtime; :meth:`start` binds, :meth:`stop` closes."""

    def __init__(
        self,
        runtime: Runtime,
        control: CameraControl,
        config: HttpConfig,
        registry: CollectorRegistry,
        workers: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``runtime``: the service's runtime, or the cluster's coordinator (``workers`` then
        lists its workers in ``/health``)."""
        self._runtime = runtime
        self._workers = workers
        self._control = control
        self._config = config
        self._token = config.token()
        self._registry = registry
        self._snapshots = Snapshots(config.snapshot_fps)
        self._page = resources.files(__package__).joinpath("static/index.html").read_bytes()
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.add_routes([
            web.get("/", self._index),
            web.get("/metrics", self._metrics_text),
            web.get("/health", self._health),
            web.get("/live", self._live),
            web.get("/ready", self._ready),
            web.get("/api/v1/cameras", self._list),
            web.post("/api/v1/cameras", self._add),
            web.get("/api/v1/cameras/{id}", self._get),
            web.delete("/api/v1/cameras/{id}", self._remove),
            web.get("/cameras/{id}/latest.jpg", self._snapshot),
            web.get("/api/v1/cameras/{id}/faces", self._faces),
            web.get(r"/faces/{camera}/{day:\d{4}-\d{2}-\d{2}}/{track:\d{1,18}}.jpg", self._crop),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        self.url: str | None = None

    async def start(self) -> str:
        """Listen on ``http.listen``; returns the URL (the real port when 0 was asked).
        Raises ConfigError when the address cannot be bound."""
        host, port = self._config.address
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"http.listen: cannot listen on {self._config.listen}: {exc.strerror or exc}") from exc
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        log.info("http listening", url=self.url, token=self._token is not None)
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Write requests carry the token when one is set."""
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and self._token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token.encode()):
                return _error(401, "this endpoint needs Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _health(self, request: web.Request) -> web.Response:
        report = health(self._runtime, None if self._workers is None else self._workers())
        return web.json_response(report, status=503 if report["status"] == DOWN else 200)

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, request: web.Request) -> web.Response:
        is_ready = ready(self._runtime)
        return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"cameras": [self._camera(camera.id) for camera in self._runtime.cameras()]})

    async def _get(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._camera(request.match_info["id"]))
        except KeyError:
            return _error(404, f"no camera {request.match_info['id']!r}")

    async def _add(self, request: web.Request) -> web.Response:
        if not self._runtime.ready:
            return _error(503, "the service is starting or stopping")
        try:
            table = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body: not JSON ({exc})")
        try:
            camera = self._control.add(table)
        except ConfigError as exc:
            return _error(400, str(exc))
        except CameraExists as exc:
            return _error(409, str(exc))
        except NotAdmitted as exc:
            return _error(422, f"not admitted: {exc}")
        return web.json_response(self._camera(camera.id), status=201, headers={"Location": f"/api/v1/cameras/{camera.id}"})

    async def _remove(self, request: web.Request) -> web.Response:
        camera = request.match_info["id"]
        if not self._runtime.ready:
            return _error(503, "the service is starting or stopping")
        try:
            analysed = await self._control.remove(camera)
        except KeyError:
            return _error(404, f"no camera {camera!r}")
        self._snapshots.forget(camera)
        return web.json_response({"removed": camera, "analysed": analysed})

    async def _snapshot(self, request: web.Request) -> web.Response:
        camera = request.match_info["id"]
        try:
            latest = await self._runtime.latest_frame(camera)
        except KeyError:
            return _error(404, f"no camera {camera!r}")
        if latest is None:
            return _error(404, f"camera {camera!r} has no analysed frame yet")
        jpeg = await self._snapshots.jpeg(camera, latest)
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _faces(self, request: web.Request) -> web.Response:
        camera = request.match_info["id"]
        try:
            tracks = await self._runtime.faces(camera)
        except KeyError:
            return _error(404, f"no camera {camera!r}")
        for track in tracks:
            track["crop"] = None if track["crop"] is None else "/" + quote(track["crop"])
        return web.json_response({"camera": camera, "tracks": tracks}, headers={"Cache-Control": "no-store"})

    async def _crop(self, request: web.Request) -> web.StreamResponse:
        camera, day, track = (request.match_info[key] for key in ("camera", "day", "track"))
        if camera in (".", ".."):  # the route already keeps '/' out of it
            return _error(404, "no such crop")
        path = self._runtime.config.output.dir / "faces" / camera / day / f"{int(track)}.jpg"
        if not path.is_file():
            return _error(404, f"no crop of track {track} of camera {camera!r} on {day}")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "no-cache"})

    def _camera(self, camera: str) -> dict[str, Any]:
        report = self._runtime.report(camera)
        return {
            **camera_json(report),
            "config": camera_config_json(report.config),
            "packets": report.packets,
            "counts": report.counts,
            "losses": report.losses,
            "dropped_by_reason": report.dropped,
            "queued_access_units": report.queued_units,
            "queued_frames": report.queued_frames,
        }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json", headers=headers)
