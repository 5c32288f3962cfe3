"""The explorer's composition root: the FastAPI app (pages, /api, /metrics, /healthz, /readyz) and ``serve``.

Security, in one place:
- Every response carries a Content-Security-Policy that allows no script at all (the pages have none), and
  nosniff, so a browser never runs or guesses at what an article smuggled in.
- JSON is written with ``<``, ``>`` and ``&`` escaped (``\\u003c``...): the same values, but no ``<script>``
  even in the bytes.
- Errors never answer 500 for bad input: validation errors and ``InvalidInput`` are 422 with a message
  naming the parameter; a database that does not answer is 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from consumers.explorer import api, pages
from consumers.explorer.views import InvalidInput
from consumers.metrics import ExplorerMetrics, Health, exposition, health_answer
from consumers.settings import Settings
from consumers.storage import schema
from consumers.storage.explore import ExplorerStore, can_write, make_reader_engine

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CHECK_SECONDS = 5.0  # how often the database is checked for /readyz
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class SafeJSONResponse(JSONResponse):
    """JSON with the characters HTML gives a meaning escaped: valid JSON of the same values."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class RequestObserver:
    """ASGI middleware: counts and times every request by its route template, and adds the security headers.

    The template (``/api/stories/{story_id}``) is known once routing ran, which sets ``scope["route"]``.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ExplorerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # any token is a method to HTTP
            self.metrics.observe_request(method, route, status, time.perf_counter() - started)


class Readiness:
    """Checks the database every CHECK_SECONDS in a thread of its own: /readyz reads the result, never waits."""

    def __init__(self, store: ExplorerStore, health: Health) -> None:
        self.store, self.health = store, health
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        try:
            self.store.ping()
            schema.check_at_head(self.store.engine)
            ok = True
        except (SQLAlchemyError, schema.SchemaNotReady) as exc:
            log.warning("database check failed", extra={"error": _first_line(exc)})
            ok = False
        self.health.set("database", ok)
        self.health.tick()

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="explorer-readiness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            self.check()


def create_app(settings: Settings, store: ExplorerStore | None = None) -> FastAPI:
    """The explorer over ``store`` (default: a read-only engine on explorer_database_url or database_url)."""
    store = store or ExplorerStore(make_reader_engine(reader_url(settings)))
    metrics = ExplorerMetrics()
    health = Health(stall_seconds=max(settings.stall_seconds, 6 * CHECK_SECONDS))
    readiness = Readiness(store, health)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        readiness.start()
        try:
            yield
        finally:
            log.info("explorer stopping")  # as the roles log theirs: the end of a graceful stop
            readiness.stop()

    app = FastAPI(title="newsdedup explorer", version=_version(), lifespan=lifespan,
                  description="Read-only lookup of stories and their provenance. Pages: /, /stories/{id}, "
                              "/search, /why. This document: /openapi.json; readable: /docs.",
                  docs_url=None, redoc_url=None,  # FastAPI's pages load scripts from a CDN: see /docs below
                  default_response_class=SafeJSONResponse)
    app.state.store = store
    app.state.token = settings.explorer_token
    app.state.fingerprint = settings.fingerprint_config()
    app.state.match = settings.match_config()
    app.state.templates = templates()
    app.state.metrics, app.state.health = metrics, health
    app.add_middleware(RequestObserver, metrics=metrics)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        metrics.set_ready(health.ready)
        body, content_type = exposition(metrics)
        return Response(body, media_type=content_type)

    @app.get("/healthz", include_in_schema=False)
    @app.get("/readyz", include_in_schema=False)
    def health_endpoints(request: Request) -> Response:
        ok, body = health_answer(metrics, health, request.url.path)
        return Response(body, status_code=200 if ok else 503, media_type="application/json")

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs(request: Request) -> HTMLResponse:
        return pages.render(request, "docs.html", {"operations": pages.operations(app.openapi())})

    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return SafeJSONResponse({"detail": message}, status_code=status, headers=headers)
        return pages.render(request, "error.html", {"status": status, "message": message}, status=status)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # The message names each parameter and what it must be; pydantic's "input" (the hostile value) is left out.
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                             for error in exc.errors())
        return answer(request, 422, f"invalid request: {problems}")

    @app.exception_handler(InvalidInput)
    def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return answer(request, 422, f"invalid request: {exc}")

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}: see / for the pages and /docs for the API"
        return answer(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    def database_down(request: Request, exc: OperationalError) -> Response:
        log.warning("database unavailable", extra={"error": _first_line(exc)})
        return answer(request, 503, "the database does not answer; try again shortly")


class _Server(uvicorn.Server):
    """Exits 0 after a graceful stop on SIGTERM or SIGINT, as the roles do: uvicorn itself raises the signal
    again once stopped, which ends the process by it (-15), a failure to supervisors and tests."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def templates() -> Environment:
    """Jinja2 with autoescape on for every template: article text is hostile input."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined)
    env.filters["when"] = pages.when
    env.filters["href"] = pages.safe_href
    env.filters["ratio"] = pages.ratio
    return env


def reader_url(settings: Settings) -> str:
    return settings.explorer_database_url or settings.database_url


def serve(settings: Settings) -> int:
    """``newsdedup serve``: check the database, then serve until SIGTERM or SIGINT (uvicorn stops gracefully)."""
    from consumers.storage.database import parse_url, safe_url

    url = reader_url(settings)
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        # SQLite would create an empty file, and the explorer only reads: say so instead.
        raise FileNotFoundError(f"no SQLite database at {parsed.database}: give the file 'newsdedup run --db' wrote")
    store = ExplorerStore(make_reader_engine(url))
    schema.check_at_head(store.engine)  # a wrong URL, password or schema: one line and exit 1, as the roles do
    if can_write(store.engine):
        log.warning("the explorer's database role may write rows; give it the read-only role newsdedup_reader "
                    "(explorer_database_url). Its sessions are read-only all the same", extra={"url": safe_url(url)})
    app = create_app(settings, store)
    log.info("explorer listening", extra={"host": settings.explorer_host, "port": settings.explorer_port,
                                          "database": safe_url(url), "token": bool(settings.explorer_token)})
    # log_config=None: uvicorn logs through the root logger, as JSON lines like every role; no access log
    # (request counts and latencies are on /metrics).
    server = _Server(uvicorn.Config(app, host=settings.explorer_host, port=settings.explorer_port, log_config=None,
                                    access_log=False, server_header=False))
    server.run()
    return 0 if server.started else 1  # not started: the port is taken (uvicorn logged it)




def _version() -> str:
    from consumers.metrics import package_version

    return package_version()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
