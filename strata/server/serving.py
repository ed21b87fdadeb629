"""``strata serve``: the inference server of :mod:`strata.serving`, wired to a Client.

Each worker builds everything itself in its ASGI startup — the Client, the endpoints' models
(loaded and warmed in a background thread, so ``/v2/health/live`` answers at once and
``/v2/health/ready`` says 503 until every model is warm), the prediction log writer and the
thread following aliases. Workers are spawned, never forked from a process holding a model:
LightGBM's OpenMP pool deadlocks in forked children. Thread pools are pinned before any
model library is imported (``OMP_NUM_THREADS`` and the BLAS variables, ``threads`` per
worker), so a 1-row predict never wakes every core.

Auth follows ``strata server``: tokens by default (the ``predict`` permission, which every
role holds), ``--no-auth`` only on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from typing import Any

from strata.core.config import Settings, load_settings
from strata.core.errors import PermissionDenied, Unauthenticated
from strata.core.principal import Permission, Principal
from strata.serving.models import ServeConfig

log = logging.getLogger("strata.serving")

CONFIG_ENV = "STRATA_SERVE_CONFIG"
WORKERS_ENV = "STRATA_SERVE_WORKERS"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def pin_threads(threads: int) -> None:
    """Set the OpenMP/BLAS pool sizes for this process and the workers it spawns (takes
    effect where the libraries are not loaded yet; a value set by the user is kept)."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))


class TokenCache:
    """Bearer tokens checked against governance, remembered for ``ttl`` seconds by their
    sha256, so a prediction does not cost a database read (a revoked token stops working
    within ``ttl``)."""

    def __init__(self, authenticate: Any, ttl: float = 10.0) -> None:
        self._authenticate = authenticate
        self.ttl = ttl
        self._known: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def principal(self, header: str | None) -> Principal:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "Authentication required: send 'Authorization: Bearer <token>' "
                "(create one with `strata tokens create --user NAME`)"
            )
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        hit = self._known.get(key)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = self._authenticate(token)
            with self._lock:
                if len(self._known) > 10_000:
                    self._known.clear()
                self._known[key] = (now + self.ttl, principal)
        if not principal.can(Permission.PREDICT):
            raise PermissionDenied(
                f"User {principal.name!r} may not predict: it needs the 'predict' permission",
                details={"needed": "predict", "role": principal.role.value},
            )
        return principal


def build_serving_app(
    config: ServeConfig,
    settings: Settings | None = None,
    *,
    auth: bool | None = None,
    registry: Any = None,
    mounted: bool = False,
    freeze_heap: bool = False,
) -> Any:
    """The serving ASGI app of one worker (models load at its startup). ``registry`` is the
    Prometheus registry to add the serving metrics to (``strata server``'s own, mounted).
    ``freeze_heap``: the worker's process serves (``strata serve``, ``strata server
    --serve``), so its heap is frozen once the models are loaded (``Endpoints._settle_heap``)."""
    from strata.client import Client
    from strata.serving.app import ServingApp
    from strata.serving.endpoints import Endpoints
    from strata.serving.metrics import ServingMetrics
    from strata.serving.predlog import PredictionLog
    from strata.serving.routing import Router

    settings = settings or load_settings()
    auth_on = settings.auth if auth is None else auth
    client = Client(settings=settings)
    metrics = ServingMetrics(registry)
    predlog = None
    if config.prediction_log.enabled and not client.is_remote:
        predlog = PredictionLog(
            client.backends.artifacts,
            config.prediction_log,
            on_drop=metrics.predlog_dropped.inc,
            on_write=metrics.predlog_written.inc,
        )
    registry = client.registry
    endpoints = Endpoints(
        config,
        tracking=client.tracking,
        registry=registry,
        policy_source=_policy_source(client),
        on_swap=lambda name: metrics.swaps.labels(name).inc(),
        sampling_source=_sampling_source(client),
        freeze_heap=freeze_heap,
    )
    router = Router(
        metrics, predlog, threads=config.threads, large_batch_threads=config.large_batch_threads
    )
    router.sample_rates = endpoints.sample_rates
    publish = _status_publisher(client, router.stats, config.report_seconds)

    def on_status(statuses: list[Any]) -> None:
        metrics.sample_process()  # every worker's CPU and memory, fresh within 30 s
        if publish is not None:
            publish(statuses)

    endpoints.on_status = on_status
    authenticate = None
    if auth_on:
        from strata.governance.embedded import EmbeddedGovernance

        governance = client.governance
        if not isinstance(governance, EmbeddedGovernance):
            # Models come from a Strata server (STRATA_URI: `strata deploy build --fetch`),
            # but callers' tokens are checked here, against this process's own metadata
            # database (STRATA_HOME): the image's STRATA_ADMIN_TOKEN is bootstrapped there.
            local = Client("", settings=settings.model_copy(update={"uri": ""}))
            governance = local.governance
            assert isinstance(governance, EmbeddedGovernance)
        tokens = TokenCache(governance.authenticate)

        async def authenticate(header: str | None) -> Principal:
            return await asyncio.to_thread(tokens.principal, header)

    readiness = _WorkerReadiness.from_env()
    # Loading runs in a thread while the worker already answers (readiness says when it is
    # done), so a shutdown can come in the middle of it: the lock orders the two, and a
    # load that finds the worker stopping starts nothing (no predict pool to submit to, no
    # follower thread left behind).
    lifecycle = threading.Lock()
    stopping = threading.Event()

    def load() -> None:
        endpoints.load_all()
        with lifecycle:
            if stopping.is_set():
                return
            router.start_pool()
            endpoints.start()
        if readiness is not None:
            readiness.wait_and_mark(endpoints)

    async def startup() -> None:
        if predlog is not None:
            predlog.start()
        threading.Thread(target=load, name="strata-load", daemon=True).start()

    def stop() -> None:
        with lifecycle:
            stopping.set()
        endpoints.stop()
        router.close()

    async def shutdown() -> None:
        await asyncio.to_thread(stop)
        if predlog is not None:
            await asyncio.to_thread(predlog.close)
        client.close()

    def payload() -> bytes:
        from strata.server.app import _metrics_payload

        metrics.sample_process()
        return _metrics_payload(metrics.registry)

    return ServingApp(
        endpoints,
        router,
        metrics,
        authenticate=authenticate,
        max_bytes=settings.max_request_bytes,
        max_in_flight=config.max_in_flight,
        metrics_payload=payload,
        on_startup=startup,
        on_shutdown=shutdown,
        mounted=mounted,
        peers_ready=None if readiness is None else readiness.all_ready,
    )


class _WorkerReadiness:
    """Readiness across the workers of one ``strata serve --workers N``: each worker marks
    itself ready in the shared multiprocess directory (``ready-<pid>``) once its models are
    warm; ``/v2/health/ready`` answers 200 only when N live workers have (a marker of a
    worker that died does not count)."""

    def __init__(self, directory: str, workers: int) -> None:
        from pathlib import Path

        self.dir = Path(directory) / "strata-ready"
        self.workers = workers
        self._all = False

    @classmethod
    def from_env(cls) -> _WorkerReadiness | None:
        workers = int(os.environ.get(WORKERS_ENV, "1") or 1)
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if workers <= 1 or not directory:
            return None
        return cls(directory, workers)

    def wait_and_mark(self, endpoints: Any) -> None:
        while not endpoints.ready:  # a failed model is retried at each poll
            time.sleep(0.2)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"ready-{os.getpid()}").touch()

    def all_ready(self) -> bool:
        if self._all:
            return True
        live = 0
        for marker in self.dir.glob("ready-*"):
            try:
                os.kill(int(marker.name.removeprefix("ready-")), 0)
                live += 1
            except (ValueError, ProcessLookupError, PermissionError):
                continue
        self._all = live >= self.workers  # once all were ready, a restart reloads alone
        return self._all


class ServingRoutes:
    """Mounts an inference server's routes in ``strata server`` (``--serve FILE``): its
    predict, OIP and health routes go to the serving app, everything else to the server; the
    serving app starts and stops with the server's lifespan."""

    def __init__(self, app: Any, *, serving: Any) -> None:
        self.app = app
        self.serving = serving

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            serving = self.serving

            async def lifespan_receive() -> Any:
                message = await receive()
                if message["type"] == "lifespan.startup" and serving.on_startup is not None:
                    await serving.on_startup()
                elif message["type"] == "lifespan.shutdown":
                    if serving.on_shutdown is not None:
                        await serving.on_shutdown()
                    serving.close()
                return message

            await self.app(scope, lifespan_receive, send)
            return
        if kind == "http" and self.serving.routes(scope["method"], scope["path"]):
            await self.serving(scope, receive, send)
            return
        if kind == "http" and scope["path"] == "/metrics":
            self.serving.metrics.flush()  # the server's scrape: this worker's counts up to now
        await self.app(scope, receive, send)


def mount_from_env(app: Any, settings: Settings, auth: bool) -> None:
    """Mount the endpoints of ``STRATA_SERVE_CONFIG`` (set by ``strata server --serve``)."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        return
    config = ServeConfig.model_validate(json.loads(raw))
    serving = build_serving_app(
        config,
        settings,
        auth=auth,
        registry=app.state.metrics.registry,
        mounted=True,
        freeze_heap=True,
    )
    app.add_middleware(ServingRoutes, serving=serving)


def _status_publisher(
    client: Any, stats: dict[str, dict[str, float]], report_seconds: float = 30.0
) -> Any:
    """Publishes this worker's endpoint statuses where the serving service lists them."""
    if client.is_remote:
        return None
    import socket
    from datetime import UTC, datetime

    from strata.serving.policies import publish_status

    store = client.backends.artifacts
    server = f"{socket.gethostname()}:{os.getpid()}"
    last: dict[str, tuple[float, dict[str, float]]] = {}

    def publish(statuses: list[Any]) -> None:
        now = datetime.now(UTC)
        for status in statuses:
            totals = dict(stats.get(status.name, {}))
            counts = dict(totals)
            # Since the previous report (at most 30 s ago): the live rate, errors, latency.
            tick = time.monotonic()
            previous = last.get(status.name)
            if previous is not None and tick > previous[0]:
                before = previous[1]
                requests = counts.get("requests", 0.0) - before.get("requests", 0.0)
                counts["rate_rps"] = requests / (tick - previous[0])
                counts["window_requests"] = requests
                for key in ("errors", "latency_s"):
                    counts[f"window_{key}"] = counts.get(key, 0.0) - before.get(key, 0.0)
            last[status.name] = (tick, totals)
            update = {
                "updated_at": now,
                "server": server,
                "stats": counts,
                "report_seconds": report_seconds,
            }
            publish_status(store, status.model_copy(update=update), first=previous is None)

    return publish


def _policy_source(client: Any) -> Any:
    """Reads the runtime policy the serving service stored (None when there is none)."""
    if client.is_remote:
        return None
    from strata.serving.policies import read_policy

    store = client.backends.artifacts

    def source(endpoint: str) -> Any:
        return read_policy(store, endpoint)

    return source


def _sampling_source(client: Any) -> Any:
    """Reads the prediction log sampling rate monitoring stored (None when never set)."""
    if client.is_remote:
        return None
    from strata.serving.policies import read_sample_rate

    store = client.backends.artifacts

    def source(model: str) -> float | None:
        return read_sample_rate(store, model)

    return source


def app_from_env() -> Any:
    """Factory for ``uvicorn --factory`` in spawned workers (reads STRATA_SERVE_CONFIG)."""
    settings = load_settings()
    config = ServeConfig.model_validate(json.loads(os.environ[CONFIG_ENV]))
    return build_serving_app(config, settings, auth=settings.auth, freeze_heap=True)


def serve_models(
    config: ServeConfig,
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    auth: bool,
    on_started: Any = None,
) -> None:
    """Run the inference server until SIGINT/SIGTERM (see :func:`strata.server.run.serve`)."""
    from strata.server.run import serve

    pin_threads(config.threads)
    os.environ[WORKERS_ENV] = str(workers)
    if config.large_batch_threads is None:
        share = max(1, (os.cpu_count() or 1) // max(workers, 1))
        config = config.model_copy(update={"large_batch_threads": share})
    os.environ[CONFIG_ENV] = config.model_dump_json()
    serve(
        settings,
        host=host,
        port=port,
        workers=workers,
        auth=auth,
        on_started=on_started,
        factory="strata.server.serving:app_from_env",
        app=None
        if workers > 1
        else build_serving_app(config, settings, auth=auth, freeze_heap=True),
    )
