"""The FastAPI app factory: mounts each layer's router, auth, errors, health and metrics."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from strata import __version__
from strata.client import Client
from strata.core.config import Settings, load_settings
from strata.core.errors import StrataError
from strata.core.principal import current
from strata.core.threads import run_blocking
from strata.governance import events
from strata.governance.api import router as governance_router
from strata.governance.deps import AuthState, peer
from strata.governance.embedded import EmbeddedGovernance
from strata.server.fastpath import FastPath, HotEntry
from strata.server.guard import BrowserGuard
from strata.server.middleware import Metrics, RequestMiddleware
from strata.server.textguard import TextGuard
from strata.tracking.hot_store import HotWriter
from strata.ui.pages import mount_ui

log = logging.getLogger("strata.server")

#: Routes that stream bodies of any size (artifact uploads); the JSON limit does not apply.
STREAMING_PREFIXES: tuple[str, ...] = (
    "/api/2.0/mlflow-artifacts/",
    "/ajax-api/2.0/mlflow-artifacts/",
    "/api/v1/artifacts/",
    "/api/v1/data/upload/",
    "/ajax-api/2.0/mlflow/upload-artifact",  # the MLflow UI's raw upload (10 MB, counted)
    "/uploads/mlflow/",  # the parts of MLflow multipart uploads (each at most 5 GiB, counted)
)


class StrataApp(FastAPI):
    """FastAPI, with :class:`HotEntry` tried ahead of the middleware stack."""

    hot_entry: HotEntry | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_entry is not None and scope["type"] == "http":
            rest = await self.hot_entry.serve(scope, receive, send)
            if rest is None:
                return
            receive = rest
        await super().__call__(scope, receive, send)


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The guard used only for its checks wraps nothing."""
    raise RuntimeError("BrowserGuard used for its checks only")


def _error_response(status: int, payload: dict[str, Any]) -> JSONResponse:
    return JSONResponse(payload, status_code=status)


async def _audit_refusal(request: Request, exc: Exception, status: int) -> None:
    """Audit a 4xx of a route that takes data in (a refused ingest, a malformed transform),
    unless the service recorded it already; 401/403 are recorded by the auth dependency."""
    from strata.data.api import AUDITED_REFUSALS

    template = getattr(request.scope.get("route"), "path", None)
    action = AUDITED_REFUSALS.get((request.method, template or ""))
    if action is None or status in (401, 403) or not 400 <= status < 500:
        return
    state: AuthState = request.app.state.auth
    name = str(request.path_params.get("name", ""))
    details: dict[str, Any] = {"route": f"{request.method} {template}", "ip": peer(request)}
    if isinstance(exc, RequestValidationError):
        details["fields"] = [
            ".".join(str(p) for p in err.get("loc", ()) if p != "body") for err in exc.errors()
        ][:20]
    await run_blocking(
        events.record_failure,
        state.db,
        state.refusals,
        exc,
        action=action,
        resource_type="dataset" if name else "transform",
        resource_id=name,
        details=details,
        who=current().principal.name,
        code="INVALID_PARAMETER_VALUE" if isinstance(exc, RequestValidationError) else None,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StrataError)
    async def _strata(request: Request, exc: StrataError) -> JSONResponse:
        await _audit_refusal(request, exc, exc.http_status)
        return _error_response(exc.http_status, exc.to_payload())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        await _audit_refusal(request, exc, 400)
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append({"field": loc, "problem": err.get("msg", "invalid")})
        first = problems[0] if problems else {"field": "", "problem": "invalid request"}
        message = f"Invalid request: {first['field'] or 'body'}: {first['problem']}"
        payload = {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": message,
            "details": {"errors": problems},
        }
        return _error_response(400, payload)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "ENDPOINT_NOT_FOUND" if exc.status_code == 404 else "BAD_REQUEST"
        if exc.status_code == 405:
            code = "METHOD_NOT_ALLOWED"
        message = (
            f"No endpoint {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return _error_response(
            exc.status_code, {"error_code": code, "message": message, "details": {}}
        )


def _forget_dead_workers(directory: str) -> None:
    """Drop the live-only gauges of worker processes that have exited (a restarted worker's
    frozen CPU, memory and in-flight values would otherwise stay in every merged scrape).
    ``prometheus_client`` leaves this to the process manager; uvicorn's has no exit hook, so
    the scrape does it: the files are named ``<kind>_<mode>_<pid>.db``."""
    from prometheus_client import multiprocess

    pids: set[int] = set()
    for path in Path(directory).glob("gauge_live*_*.db"):
        number = path.stem.rsplit("_", 1)[-1]
        if number.isdigit():
            pids.add(int(number))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            continue


def _metrics_payload(registry: CollectorRegistry) -> bytes:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        _forget_dead_workers(directory)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(registry)


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    auth: bool | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the Strata ASGI app on embedded services.

    ``freeze_heap``: the app owns its process (``strata server``), so once it has started,
    what the start left (modules, the app, its routes) is moved out of the cyclic
    collector's view (``gc.freeze``). Python's full collections walked all of it otherwise:
    the first after the start took ~130 ms with the event loop stopped, ~0.07 ms a call over
    a 2,000-call burst of single `log_metric` calls (docs/tracking.md). Not for processes
    that merely embed the app (tests): their later garbage would stay uncollected.

    ``auth`` overrides ``settings.auth``. Without auth the app itself answers loopback
    callers only, whatever address it is served on (see :mod:`strata.server.guard`).
    """
    settings = settings or load_settings()
    client = client or Client("", settings=settings)
    if client.is_remote:
        raise ValueError("the server needs an embedded client")
    governance = client.governance
    assert isinstance(governance, EmbeddedGovernance)
    auth_enabled = settings.auth if auth is None else auth

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_blocking(lambda: client.backends.db)  # migrate before serving
        from strata.monitoring.scheduler import from_env as alert_scheduler

        alerts = alert_scheduler(client.monitoring)  # evaluates alert rules on a schedule
        # FastAPI builds its included routers' route contexts on first use, each route's
        # dependencies analysed again (~0.3 s for ~340 routes): built here, before serving,
        # so the first caller does not wait for them (a loaded CI machine once took 5.2 s).
        await run_blocking(lambda: list(iter_route_contexts(app.routes)))
        if freeze_heap:
            gc.collect()  # what is garbage now is freed, not frozen
            gc.freeze()
        yield
        if alerts is not None:
            alerts.stop()
        hot_writer.close()
        client.close()

    app = StrataApp(
        title="Strata",
        version=__version__,
        description="The whole ML lifecycle in one package. Auth: `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # served by the UI from vendored assets (works offline)
        redoc_url=None,
        # Starlette's trailing-slash redirect builds its Location from the Host header:
        # an open redirect for whoever controls that header. A wrong path is a 404.
        redirect_slashes=False,
    )
    app.state.client = client
    app.state.settings = settings
    app.state.auth = AuthState(enabled=auth_enabled, governance=governance, db=client.backends.db)
    # The lean SQLite path of the MLflow logging calls (served through FastPath below).
    app.state.hot_writer = hot_writer = HotWriter(client.backends.db, app.state.auth)
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(FastPath, api=app)  # innermost: the lean MLflow routes
    app.add_middleware(TextGuard, skip_prefixes=STREAMING_PREFIXES)
    guard: dict[str, Any] = {
        "auth": auth_enabled,
        "allowed_hosts": settings.allowed_hosts,
        "allowed_origins": settings.allowed_origins,
        "any_type_prefixes": STREAMING_PREFIXES,
    }
    app.add_middleware(BrowserGuard, **guard)
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_bytes=settings.max_request_bytes,
        unlimited_prefixes=STREAMING_PREFIXES,
    )
    _install_error_handlers(app)
    # Outermost: the plain success of the hot MLflow logging calls (the same checks as the
    # stack above, by the same functions; anything else goes on to the stack).
    app.hot_entry = HotEntry(
        app,
        metrics=metrics,
        max_bytes=settings.max_request_bytes,
        guard=BrowserGuard(_no_app, **guard),
    )

    @app.get("/index.json", include_in_schema=False)
    def index() -> dict[str, Any]:
        return {
            "name": "strata",
            "version": __version__,
            "links": {
                "docs": "/docs",
                "openapi": "/openapi.json",
                "health": "/healthz",
                "ready": "/readyz",
                "metrics": "/metrics",
            },
        }

    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        """Readiness: the metadata database and the artifact store are reachable."""
        checks: dict[str, str] = {}
        ok = True
        for name, probe in (
            ("database", client.backends.db.check),
            ("artifacts", client.backends.artifacts.check),
        ):
            try:
                probe()
                checks[name] = "ok"
            except StrataError as exc:
                ok = False
                checks[name] = exc.message
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["ops"])
    def prometheus_metrics() -> Response:
        """Prometheus metrics: request count and latency by route template and status."""
        return Response(_metrics_payload(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in _layer_routers():
        app.include_router(router)
    mount_ui(app)  # last: its pages never shadow an API route
    from strata.server.serving import mount_from_env

    mount_from_env(app, settings, auth_enabled)  # `strata server --serve FILE`
    return app


def _layer_routers() -> list[Any]:
    from strata.data.api import router as data_router
    from strata.features.api import router as features_router
    from strata.models.api import router as models_router
    from strata.monitoring.api import root_router as feedback_router
    from strata.monitoring.api import router as monitoring_router
    from strata.registry.api import router as registry_router
    from strata.registry.mlflow_api import router as mlflow_registry_router
    from strata.serving.api import router as serving_router
    from strata.tracking.api import router as tracking_router
    from strata.tracking.api_models import router as logged_models_router
    from strata.tracking.mlflow_api import router as mlflow_router

    # Routes are matched in this order, one by one: the MLflow API (the hot path of training
    # scripts, ~70 routes, disjoint from /api/v1) goes first so a log-metric call does not
    # walk every other layer's routes (measured: ~12% of the server's time per call).
    return [
        mlflow_router,
        tracking_router,
        logged_models_router,
        models_router,
        governance_router,
        data_router,
        features_router,
        registry_router,
        mlflow_registry_router,
        monitoring_router,
        feedback_router,  # POST /feedback
        serving_router,
    ]


def app_from_env() -> FastAPI:
    """Factory used by ``uvicorn --factory`` for multi-worker servers (reads the env)."""
    settings = load_settings()
    return create_app(settings, auth=settings.auth, freeze_heap=True)
