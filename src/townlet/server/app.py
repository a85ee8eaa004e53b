"""The HTTP face of a live town (FastAPI): viewer page, telemetry WebSocket, console API, health and metrics.

Routes: ``GET|HEAD /`` (the viewer), ``/static/*``, ``GET /api/town`` (the static map), ``WS /ws/telemetry``
(a snapshot, then diffs and events), ``POST /api/console``, ``GET|HEAD /healthz``, ``GET /metrics``. Requests
must name this server in ``Host`` (loopback names for a loopback server); browser pages from other origins
(or with a malformed ``Origin``) are refused unless listed in ``server.allowed_origins``. Nothing served ever
contains a key or a token. Connection-level limits (header size, timeouts, connection cap, stalled viewers)
are the server stack's (:mod:`townlet.server.stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townlet.console.auth import Principal
from townlet.console.errors import E_INVALID_ARG, E_RATE_LIMITED, E_UNAUTHENTICATED
from townlet.logs import log_event
from townlet.server import metrics
from townlet.server.console_api import (
    E_TIMEOUT,
    E_UNAVAILABLE,
    STATUS_OF,
    ResultCounter,
    bearer,
    client_address,
    proxy_networks,
    refusal,
)
from townlet.server.live import LiveTown
from townlet.server.town import town_description
from townlet.server.viewers import FRAMES, Viewer, Viewport, host_allowed, origin_allowed
from townlet.server.viewport import VIEW_MODES, RateLimit, ViewportError, ViewportFilter, parse_rect

log = logging.getLogger("townlet.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class HostGuard:
    """ASGI middleware: refuse requests whose ``Host`` is not this server's; add security headers."""

    def __init__(self, app: ASGIApp, bound_host: str, allowed_hosts: list[str]) -> None:
        self.app = app
        self.bound_host = bound_host
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the ``Host`` of HTTP and WebSocket requests; pass everything else through."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if not host_allowed(host, self.bound_host, self.allowed_hosts):
            if scope["type"] == "http":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"unknown host\n"})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


class ViewerHub:
    """The connected viewers, poked from the event loop whenever the town published something.

    The hub polls the town's publish counter instead of being called from the tick thread: a
    cross-thread wake-up costs the tick thread a system call and a wait for the interpreter lock on
    every tick, which at 100x with many viewers slows the town itself.

    Args:
        live: The live town.
        poll_s: Seconds between looks at the publish counter.
    """

    def __init__(self, live: LiveTown, poll_s: float) -> None:
        self.live = live
        self.poll_s = poll_s
        self.viewers: set[Viewer] = set()
        self.seen = -1

    async def run(self) -> None:
        """Poke every viewer after each publish (runs for the server's lifetime)."""
        while True:
            await asyncio.sleep(self.poll_s)
            version = self.live.published
            if version != self.seen and self.viewers:
                self.seen = version
                for viewer in self.viewers:
                    viewer.poke()


def create_app(live: LiveTown, secure: bool = False) -> FastAPI:
    """The FastAPI app serving ``live`` (started and stopped with the app's lifespan).

    Routes come in groups, each added by its own function: pages (``/``, ``/api/town``), health (``/healthz``,
    ``/metrics``), the console (``POST /api/console``) and the telemetry stream (``/ws/telemetry``).

    Args:
        live: The live town.
        secure: Whether the server speaks TLS (pages are then ``https`` and the stream ``wss``).
    """
    cfg = live.cfg
    results = ResultCounter()
    hub: dict[str, ViewerHub] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub["viewers"] = ViewerHub(live, 0.5 / cfg.stream_rate)
        poller = asyncio.create_task(hub["viewers"].run())
        live.start()
        try:
            yield
        finally:
            poller.cancel()
            live.viewers.close()
            await run_in_threadpool(live.stop)

    app = FastAPI(title="Townlet live server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if cfg.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(HostGuard, bound_host=cfg.host, allowed_hosts=list(cfg.allowed_hosts))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _page_routes(app, live)
    _health_routes(app, live, results)
    _console_route(app, live, results)
    _telemetry_route(app, live, hub, secure)
    return app


def _page_routes(app: FastAPI, live: LiveTown) -> None:
    """``/`` (the viewer) and ``/api/town`` (the static map and what the viewer draws with)."""
    town = town_description(live.sim)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/api/town")
    async def town_map() -> JSONResponse:
        return JSONResponse(town, headers={"cache-control": "no-cache"})


def _health_routes(app: FastAPI, live: LiveTown, results: ResultCounter) -> None:
    """``/healthz`` (503 unless ok) and ``/metrics`` (Prometheus text)."""

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        status = live.status()
        return JSONResponse(status, status_code=200 if status["status"] == "ok" else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(live, results.snapshot()), media_type=metrics.CONTENT_TYPE)


def _console_route(app: FastAPI, live: LiveTown, results: ResultCounter) -> None:
    """``POST /api/console``: rate limit and token first, then a bounded body, then the queued command's answer."""
    cfg = live.cfg
    proxies = proxy_networks(cfg.trusted_proxies)
    rates = [x.per_second for x in (cfg.auth_failures, live.sim.config.console.rate_limit) if x.per_second > 0]
    retry_after = {"retry-after": str(max(1, math.ceil(1.0 / min(rates, default=1.0))))}  # one token's refill

    @app.post("/api/console")
    async def console(request: Request) -> Response:
        source = client_address(
            request.client.host if request.client else None, request.headers.get("x-forwarded-for"), proxies
        )
        tick = live.last_tick
        token = bearer(request.headers.get("authorization"))
        # charged to a rate limit (the principal's, or for a failing token the source's) before the body is read
        admitted = await run_in_threadpool(live.console.admit, token, source)
        if not isinstance(admitted, Principal):
            return _answer(results, admitted.to_dict(), _refusal_headers(admitted.code, retry_after))
        try:
            body = await asyncio.wait_for(_read_body(request, cfg.max_body_bytes), cfg.header_timeout_s)
        except TimeoutError:
            return _answer(
                results,
                refusal(E_INVALID_ARG, f"body not received within {cfg.header_timeout_s:g} s", tick),
                status=408,
            )
        if body is None:
            return _answer(results, refusal(E_INVALID_ARG, f"body larger than {cfg.max_body_bytes} bytes", tick))
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            return _answer(
                results, refusal(E_INVALID_ARG, 'body must be a JSON object {"cmd", "args", "cmd_id"}', tick)
            )
        if not live.alive:
            message = f"the town has stopped ({live.error or 'not running'}); see /healthz"
            return _answer(results, refusal(E_UNAVAILABLE, message, tick), status=503)
        future = await run_in_threadpool(live.console.submit_as, admitted, payload, source)
        live.wake()
        try:
            result = (await asyncio.wait_for(asyncio.wrap_future(future), cfg.console_timeout_s)).to_dict()
        except TimeoutError:
            body_out = refusal(
                E_TIMEOUT,
                f"the town did not apply the command within {cfg.console_timeout_s:g} s; it may still be applied",
                tick,
            )
            return _answer(results, body_out, status=504)
        return _answer(results, result, _refusal_headers(result["code"], retry_after))


def _telemetry_route(app: FastAPI, live: LiveTown, hub: dict[str, ViewerHub], secure: bool) -> None:
    """``/ws/telemetry``: origin check, a viewer cap, then the stream (the hub exists once the app started)."""
    cfg = live.cfg

    @app.websocket("/ws/telemetry")
    async def telemetry(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if not origin_allowed(origin, ws.headers.get("host"), secure, list(cfg.allowed_origins)):
            log_event(log, "server.viewer_refused", live.last_tick, origin=origin, reason="origin")
            await ws.close(code=1008)
            return
        await ws.accept()
        frames = ws.query_params.get("frames", "message")
        if frames not in FRAMES:
            log_event(log, "server.viewer_refused", live.last_tick, reason="frames")
            await ws.close(code=1008, reason=f"frames must be one of {', '.join(FRAMES)}")
            return
        if len(live.viewers.clients) >= cfg.max_viewers:  # full: say so with the close code, not a refused handshake
            log_event(log, "server.viewer_refused", live.last_tick, reason="full", viewers=cfg.max_viewers)
            await ws.close(code=1013, reason="the server is full; try again later")
            return
        try:
            viewport = _viewport(live, ws.query_params.get("view", "auto"), ws.query_params.get("rect"))
        except ViewportError as exc:
            log_event(log, "server.viewer_refused", live.last_tick, reason="view")
            await ws.close(code=1008, reason=str(exc))
            return
        if viewport is not None:  # first, so that every tick this viewer may take has its state kept
            live.viewers.watch_viewport(True)
        cursor = live.viewers.subscribe()
        pace = live.sim.clock.interval
        viewer = Viewer(
            ws, cursor, cfg.stream_rate, cfg.catch_up_rate, cfg.behind_ticks, frames == "tick", viewport, pace
        )
        viewers = hub["viewers"]
        viewers.viewers.add(viewer)
        live.request_snapshot()
        try:
            await viewer.run()
        finally:
            viewers.viewers.discard(viewer)
            live.viewers.unsubscribe(cursor)
            if viewport is not None:
                live.viewers.watch_viewport(False)
            with contextlib.suppress(Exception):
                await ws.close()


def _viewport(live: LiveTown, mode: str, rect: str | None) -> Viewport | None:
    """The viewport of a new viewer (None: it gets the whole town), from ``?view=`` and ``?rect=``.

    Raises:
        ViewportError: an unknown mode or a malformed rectangle.
    """
    cfg = live.cfg
    if mode not in VIEW_MODES:
        raise ViewportError(f"view must be one of {', '.join(VIEW_MODES)}")
    first = parse_rect(rect) if rect is not None else None
    if mode == "full" or (mode == "auto" and int(live.sim.world.agents.alive.sum()) <= cfg.viewport_above):
        return None
    town = live.sim.world.town
    return Viewport(
        live.viewers,
        ViewportFilter(int(town.width), int(town.height), cfg.viewport_max_tiles, cfg.viewport_margin, first),
        RateLimit(cfg.viewport_rate),
        cfg.viewport_refusals,
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it grows past ``limit`` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _refusal_headers(code: str | None, retry_after: dict[str, str]) -> dict[str, str]:
    if code == E_UNAUTHENTICATED:
        return {"www-authenticate": 'Bearer realm="townlet"'}
    return retry_after if code == E_RATE_LIMITED else {}


def _answer(
    results: ResultCounter, body: dict[str, Any], headers: dict[str, str] | None = None, status: int | None = None
) -> Response:
    results.add(body["code"])
    code = status if status is not None else STATUS_OF.get(body["code"], 409)
    return Response(orjson.dumps(body), status_code=code, media_type="application/json", headers=headers)
