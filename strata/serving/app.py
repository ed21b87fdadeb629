"""The inference server's ASGI app: Open Inference Protocol v2, the MLflow scoring protocol
and Strata JSON over the endpoints of one worker.

A lean ASGI callable (no framework routing on the hot path, like the bare ceiling app it is
measured against). Anything it does not route goes to ``fallback`` (``strata serve`` hands it
the REST API of the serving service; mounted in ``strata server``, the rest of the server).

Status codes: malformed JSON 400; an unknown model, version or alias 404 listing what is
served; inputs that do not fit the signature 422 naming the input; a body over the limit
413; a model raising at predict 500 with the request id (the worker keeps serving); a full
worker (``max_in_flight``) or an endpoint not ready 503 with ``Retry-After``. OIP errors are
``{"error": message}`` as the protocol says; the others Strata's ``{error_code, message,
details}`` (MLflow's own shape).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from random import getrandbits
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from strata.core.errors import NotFound, PermissionDenied, StrataError, Unavailable
from strata.core.principal import Permission
from strata.serving.access import AccessLog
from strata.serving.endpoints import Endpoints
from strata.serving.handlers import (
    _JSON,
    ENDPOINT,
    HIDDEN_LOAD_ERROR,
    PROTOCOLS,
    READS,
    HttpError,
    PredictRoutes,
    load_error,
)
from strata.serving.metrics import ServingMetrics
from strata.serving.routing import Router

log = logging.getLogger("strata.serving")


def _strata_version() -> str:
    import sys

    return str(getattr(sys.modules.get("strata"), "__version__", "unknown"))


__version__ = _strata_version()

Authenticate = Callable[[str | None], Awaitable[Any]]
"""Checks a bearer token for the predict permission; raises Unauthenticated/PermissionDenied."""

_OPEN = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/ping", "/health", "/version", "/metrics"}
)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


_LOOPBACK_PEERS: dict[str, bool] = {}


def _loopback(client: tuple[str, int] | None) -> bool:
    if client is None:
        return False
    host = client[0]
    known = _LOOPBACK_PEERS.get(host)
    if known is not None:
        return known
    try:
        answer = ipaddress.ip_address(host).is_loopback
    except ValueError:
        answer = host in ("testclient", "localhost")
    if len(_LOOPBACK_PEERS) < 4096:
        _LOOPBACK_PEERS[host] = answer
    return answer


def _host(value: str) -> str:
    host = value.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class ServingApp(PredictRoutes):
    """See the module docstring."""

    def __init__(
        self,
        endpoints: Endpoints,
        router: Router,
        metrics: ServingMetrics,
        *,
        authenticate: Authenticate | None,
        max_bytes: int,
        max_in_flight: int,
        fallback: ASGIApp | None = None,
        metrics_payload: Callable[[], bytes] | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        mounted: bool = False,
        peers_ready: Callable[[], bool] | None = None,
    ) -> None:
        self.mounted = mounted
        self.peers_ready = peers_ready
        """With several workers: whether every other worker is ready too (a probe reaches
        one worker; ready must mean that any of them answers)."""
        self.endpoints = endpoints
        self.router = router
        self.metrics = metrics
        self.authenticate = authenticate
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.fallback = fallback
        self.metrics_payload = metrics_payload or (lambda: generate_latest(metrics.registry))
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.access_log = AccessLog()

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        handler = self._route(method, path)
        if handler is None:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            else:
                await self._respond(
                    send,
                    404,
                    self._error_body(path, NotFound(f"No endpoint {method} {path}")),
                    _JSON,
                    "",
                )
            return
        self.metrics.start(asyncio.get_running_loop())
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")
        if not (0 < len(request_id) <= 64 and request_id.isprintable()):
            # Unique, not secret (answered in x-request-id): 128 random bits of the worker's
            # own Mersenne Twister, seeded from os.urandom (1 syscall fewer per request).
            request_id = f"{getrandbits(128):032x}"
        start = time.perf_counter()
        status = 500
        try:
            refusal = await self._guard(scope, headers, path)
            if refusal is not None:
                status, body = refusal
                self._refused(scope, handler, status)
                await self._respond(send, status, body, _JSON, request_id)
                return
            status, body, extra = await handler(scope, receive, headers, request_id)
            await self._respond(send, status, body, extra, request_id)
        except HttpError as exc:
            status = exc.status
            if not exc.counted:
                self._refused(scope, handler, status)
            error = exc.error
            details = error.details
            if details.get("error") and load_error(scope, details["error"]) != details["error"]:
                name = details.get("endpoint")  # not_ready: the load error for users only
                error = Unavailable(
                    f"Endpoint {name!r} is not ready: {HIDDEN_LOAD_ERROR}",
                    details={"endpoint": name},
                )
            body = self._error_body(path, error, request_id)
            await self._respond(send, status, body, [*_JSON, *exc.headers], request_id)
        except Exception:
            log.exception(
                "Unhandled error on %s %s", method, path, extra={"request_id": request_id}
            )
            status = 500
            err = StrataError(
                f"Internal server error (request id {request_id}); the server log has the details",
                details={"request_id": request_id},
            )
            await self._respond(send, 500, self._error_body(path, err), _JSON, request_id)
        finally:
            if self.access_log.enabled():
                self.access_log.add(method, path, status, start, request_id)

    def _refused(self, scope: Scope, handler: Any, status: int) -> None:
        """Count a prediction refused before it was admitted (unauthenticated, malformed,
        too large, an unknown model or version...) in ``requests_total`` by code, and in its
        endpoint's errors. Labelled with the endpoint its path named when it names one
        served here, else with none (never with what the caller wrote: no label per
        made-up name)."""
        protocol = PROTOCOLS.get(getattr(handler, "__name__", ""))
        if protocol is None:
            return  # not a prediction (health, metadata, metrics)
        ep = scope.get(ENDPOINT)
        name, model = ("", "") if ep is None else (ep.name, ep.ref.name)
        metrics = self.metrics
        metrics.add(metrics.child(metrics.requests, name, model, "", protocol, "", str(status)))
        if ep is not None:
            stats = self.router.stats.setdefault(ep.name, {})
            stats["requests"] = stats.get("requests", 0.0) + 1
            stats["errors"] = stats.get("errors", 0.0) + 1

    def close(self) -> None:
        """Write what the access log and the metrics still hold (at shutdown)."""
        self.access_log.flush()
        self.metrics.flush()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as exc:
                    log.exception("serving startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    await self.on_shutdown()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        request_id: str,
    ) -> None:
        out = [
            *headers,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", request_id.encode("latin-1")),
        ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _error_body(path: str, error: StrataError, request_id: str = "") -> bytes:
        if path.startswith("/v2"):
            return orjson.dumps({"error": error.message})
        payload = error.to_payload()
        if request_id:
            payload["details"] = {**payload["details"], "request_id": request_id}
        return orjson.dumps(payload)

    async def _guard(
        self, scope: Scope, headers: dict[str, str], path: str
    ) -> tuple[int, bytes] | None:
        if self.authenticate is None:
            # No auth: loopback callers only, and a loopback Host (no DNS rebinding).
            if not _loopback(scope.get("client")):
                return 403, orjson.dumps(
                    {
                        "error_code": "PERMISSION_DENIED",
                        "message": "This server runs without authentication, so it answers "
                        "loopback callers only",
                        "details": {},
                    }
                )
            if _host(headers.get("host", "localhost")) not in _LOOPBACK_HOSTS:
                return 400, orjson.dumps(
                    {
                        "error_code": "BAD_REQUEST",
                        "message": "Host header not allowed on a server without authentication",
                        "details": {},
                    }
                )
            return None
        if path in _OPEN:
            return None
        try:
            principal = await self.authenticate(headers.get("authorization"))
            reads = principal.can(Permission.READ)
            if not reads:
                scope[READS] = False
            if path == "/v1/endpoints" and not reads:
                # a service token predicts; the endpoints' load errors (paths, buckets,
                # URLs) are for the people who run the server
                raise PermissionDenied(
                    f"{principal.name!r} may only predict: listing the endpoints needs "
                    "the 'read' permission (a user's token, not a service token)",
                    details={"needed": "read"},
                )
        except StrataError as exc:
            status = exc.http_status
            return status, self._error_body(path, exc)
        return None

    # -- routing -----------------------------------------------------------------------
    Handler = Callable[
        [Scope, Receive, dict[str, str], str],
        Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]],
    ]

    def routes(self, method: str, path: str) -> bool:
        """Whether this app answers ``method path`` (mounted in ``strata server``, the
        server keeps its own ``/metrics``, where the serving metrics are registered too)."""
        if self.mounted and path in ("/metrics", "/version", "/health"):
            return False
        return self._route(method, path) is not None

    def _route(self, method: str, path: str) -> ServingApp.Handler | None:
        if method == "POST":
            if path == "/invocations":
                return self._invocations
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                return self._infer
            if path.startswith("/v1/models/") and path.endswith(("/predict", "/explain")):
                return self._strata
            return None
        if method not in ("GET", "HEAD"):
            return None
        if path in ("/v2/health/live", "/ping", "/health"):
            return self._live
        if path == "/v2/health/ready":
            return self._ready
        if path == "/v2":
            return self._server_metadata
        if path == "/version":
            return self._version
        if path == "/metrics":
            return self._metrics
        if path == "/v1/endpoints":
            return self._statuses
        if path.startswith("/v2/models/"):
            return self._model_get
        return None

    async def _body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> HttpError:
        from strata.core.errors import PayloadTooLarge

        err = PayloadTooLarge(
            f"Request body is larger than the limit of {self.max_bytes} bytes "
            "(setting STRATA_MAX_REQUEST_BYTES)",
            details={"limit": self.max_bytes},
        )
        return HttpError(413, err, [(b"connection", b"close")])

    # -- plain GETs --------------------------------------------------------------------
    async def _live(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return 200, b'{"live":true,"status":"ok"}', _JSON

    async def _ready(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        statuses = self.endpoints.statuses()
        ready = self.endpoints.ready  # every model warm, the first load over
        workers_ready = ready and (self.peers_ready is None or self.peers_ready())

        def error(text: str | None) -> str | None:
            # Probes call this route without a token: with auth on, a load error (which may
            # name paths, buckets or URLs) stays on the authenticated /v1/endpoints.
            if text is None or self.authenticate is None:
                return text
            return HIDDEN_LOAD_ERROR

        doc = {
            "ready": workers_ready,
            "models": {
                s.name: {"ready": s.ready, "version": s.version, "error": error(s.error)}
                for s in statuses
            },
        }
        if ready and not workers_ready:
            doc["workers"] = "this worker is ready; another is still loading"
        extra = [] if workers_ready else [(b"retry-after", b"1")]
        return (200 if workers_ready else 503), orjson.dumps(doc), [*_JSON, *extra]

    async def _server_metadata(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        doc = {"name": "strata", "version": __version__, "extensions": ["binary_tensor_data"]}
        return 200, orjson.dumps(doc), _JSON

    async def _version(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return 200, __version__.encode(), [(b"content-type", b"text/plain; charset=utf-8")]

    async def _metrics(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        self.metrics.flush()  # this worker's counts up to now
        payload = await asyncio.to_thread(self.metrics_payload)
        return 200, payload, [(b"content-type", CONTENT_TYPE_LATEST.encode())]

    async def _statuses(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        doc = [s.model_dump(mode="json") for s in self.endpoints.statuses()]
        return 200, orjson.dumps({"endpoints": doc}), _JSON
