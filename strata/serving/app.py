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
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from strata.core.errors import InvalidInput, NotFound, StrataError, Unauthenticated, Unavailable
from strata.serving import formats, oip
from strata.serving.endpoints import Endpoint, Endpoints
from strata.serving.metrics import ServingMetrics
from strata.serving.routing import PredictFailed, Router

log = logging.getLogger("strata.serving")


def _strata_version() -> str:
    import sys

    return str(getattr(sys.modules.get("strata"), "__version__", "unknown"))


__version__ = _strata_version()
access = logging.getLogger("strata.access")

Authenticate = Callable[[str | None], Awaitable[Any]]
"""Checks a bearer token for the predict permission; raises Unauthenticated/PermissionDenied."""

_OPEN = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/ping", "/health", "/version", "/metrics"}
)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_JSON = [(b"content-type", b"application/json")]


class HttpError(Exception):
    def __init__(self, status: int, error: StrataError, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.error = error
        self.headers = headers


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


class ServingApp:
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
    ) -> None:
        self.mounted = mounted
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
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")
        if not (0 < len(request_id) <= 64 and request_id.isprintable()):
            request_id = os.urandom(16).hex()
        start = time.perf_counter()
        status = 500
        try:
            refusal = await self._guard(scope, headers, path)
            if refusal is not None:
                status, body = refusal
                await self._respond(send, status, body, _JSON, request_id)
                return
            status, body, extra = await handler(scope, receive, headers, request_id)
            await self._respond(send, status, body, extra, request_id)
        except HttpError as exc:
            status = exc.status
            body = self._error_body(path, exc.error, request_id)
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
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "%s %s %s %.2fms",
                    method,
                    path,
                    status,
                    (time.perf_counter() - start) * 1000,
                    extra={"request_id": request_id, "status": status, "route": path},
                )

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
        out = [*headers, (b"x-request-id", request_id.encode("latin-1"))]
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
            await self.authenticate(headers.get("authorization"))
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
        ready = all(s.ready for s in statuses)

        def error(text: str | None) -> str | None:
            # Probes call this route without a token: with auth on, a load error (which may
            # name paths, buckets or URLs) stays on the authenticated /v1/endpoints.
            if text is None or self.authenticate is None:
                return text
            return "failed to load; GET /v1/endpoints with a token shows why"

        doc = {
            "ready": ready,
            "models": {
                s.name: {"ready": s.ready, "version": s.version, "error": error(s.error)}
                for s in statuses
            },
        }
        extra = [] if ready else [(b"retry-after", b"1")]
        return (200 if ready else 503), orjson.dumps(doc), [*_JSON, *extra]

    async def _server_metadata(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        doc = {"name": "strata", "version": __version__, "extensions": ["binary_tensor_data"]}
        return 200, orjson.dumps(doc), _JSON

    async def _version(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return 200, __version__.encode(), [(b"content-type", b"text/plain; charset=utf-8")]

    async def _metrics(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        payload = await asyncio.to_thread(self.metrics_payload)
        return 200, payload, [(b"content-type", CONTENT_TYPE_LATEST.encode())]

    async def _statuses(self, *_: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        doc = [s.model_dump(mode="json") for s in self.endpoints.statuses()]
        return 200, orjson.dumps({"endpoints": doc}), _JSON

    def _oip_target(self, rest: str) -> tuple[Endpoint, str | None, str]:
        """``{m}[/versions/{v}][/suffix]`` → endpoint, version, suffix."""
        parts = [unquote(p) for p in rest.split("/")]
        name, version, suffix = parts[0], None, ""
        tail = parts[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) > 1:
            raise HttpError(404, NotFound(f"No endpoint /v2/models/{rest}"), [])
        suffix = tail[0] if tail else ""
        return self._endpoint(name), version, suffix

    def _endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints.get(name)
        except NotFound as exc:
            raise HttpError(404, exc, []) from None

    async def _model_get(
        self, scope: Scope, _r: Receive, _h: dict[str, str], _id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        ep, version, suffix = self._oip_target(scope["path"][len("/v2/models/") :])
        if suffix not in ("", "ready"):
            raise HttpError(404, NotFound(f"No endpoint {scope['path']}"), [])
        try:
            served = ep.by_version(version) if version is not None else ep.primary
        except NotFound as exc:
            raise HttpError(404, exc, []) from None
        if suffix == "ready":
            ready = served is not None
            doc = {"name": ep.name, "ready": ready, "version": served.version if served else None}
            if not ready:
                doc["error"] = ep.error
            return (200 if ready else 503), orjson.dumps(doc), _JSON
        if served is None:
            raise HttpError(
                503,
                Unavailable(f"Endpoint {ep.name!r} is not ready: {ep.error}"),
                [(b"retry-after", b"1")],
            )
        return 200, orjson.dumps(oip.model_metadata(served)), _JSON

    # -- predictions -------------------------------------------------------------------
    async def _predict(
        self,
        ep: Endpoint,
        columns: Any,
        *,
        version: str | None,
        request_id: str,
        sticky: str | None,
        protocol: str,
        start: float,
    ) -> Any:
        if self.in_flight >= self.max_in_flight:
            self.metrics.child(
                self.metrics.requests, ep.name, ep.ref.name, "", protocol, "", "503"
            ).inc()
            raise HttpError(
                503,
                Unavailable(
                    f"The server is at its limit of {self.max_in_flight} requests in flight; "
                    "retry shortly",
                    details={"max_in_flight": self.max_in_flight},
                ),
                [(b"retry-after", b"1")],
            )
        self.in_flight += 1
        gauge = self.metrics.child(self.metrics.in_flight, ep.name)
        gauge.inc()
        code = "500"
        model, ver = ep.ref.name, ""
        try:
            outcome = await self.router.run(
                ep, columns, version=version, request_id=request_id, sticky=sticky
            )
            model, ver = outcome.served.name, outcome.served.version
            code = "200"
            return outcome
        except InvalidInput as exc:
            code = "422"
            raise HttpError(422, exc, []) from None
        except NotFound as exc:
            code = "404"
            raise HttpError(404, exc, []) from None
        except Unavailable as exc:
            code = "503"
            raise HttpError(503, exc, [(b"retry-after", b"1")]) from None
        except PredictFailed as exc:
            log.error(
                "endpoint %s: the model raised: %s", ep.name, exc, extra={"request_id": request_id}
            )
            raise HttpError(
                500,
                StrataError(
                    f"The model failed to predict (request id {request_id}); the server log "
                    "has the details",
                    details={"request_id": request_id, "endpoint": ep.name},
                ),
                [],
            ) from None
        finally:
            self.in_flight -= 1
            gauge.dec()
            elapsed = time.perf_counter() - start
            self.metrics.child(self.metrics.latency, ep.name, model, ver).observe(elapsed)
            stats = self.router.stats.setdefault(ep.name, {})
            stats["requests"] = stats.get("requests", 0.0) + 1
            stats["latency_s"] = stats.get("latency_s", 0.0) + elapsed
            if code != "200":
                stats["errors"] = stats.get("errors", 0.0) + 1
                self.metrics.child(
                    self.metrics.requests, ep.name, model, ver, protocol, "", code
                ).inc()

    def _done(
        self,
        ep: Endpoint,
        outcome: Any,
        protocol: str,
        request_id: str,
        start: float,
        key: str | None,
    ) -> list[tuple[bytes, bytes]]:
        served = outcome.served
        rows = len(outcome.prediction.prediction)
        stats = self.router.stats.setdefault(ep.name, {})
        stats[outcome.path] = stats.get(outcome.path, 0.0) + 1
        self.metrics.child(
            self.metrics.requests,
            ep.name,
            served.name,
            served.version,
            protocol,
            outcome.path,
            "200",
        ).inc()
        self.metrics.child(
            self.metrics.rows, ep.name, served.name, served.version, outcome.path
        ).inc(rows)
        self.router.record(ep, outcome, request_id, (time.perf_counter() - start) * 1000, key)
        return [
            (b"x-strata-model-version", served.version.encode()),
            (b"x-strata-path", outcome.path.encode()),
        ]

    def _sticky(self, ep: Endpoint, headers: dict[str, str], doc: Any) -> str | None:
        kind, _, name = ep.policy.sticky_key.partition(":")
        if kind == "header":
            return headers.get(name.lower())
        if isinstance(doc, dict) and name in doc:
            return str(doc[name])
        return None

    async def _infer(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep, version, suffix = self._oip_target(scope["path"][len("/v2/models/") :])
        if suffix != "infer":
            raise HttpError(404, NotFound(f"No endpoint {scope['path']}"), [])
        body = await self._body(receive, headers)
        try:
            req = oip.parse_infer(body, headers.get("inference-header-content-length"))
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        try:
            shape_of = ep.by_version(version) if version is not None else ep.primary
            if shape_of is None:
                raise Unavailable(f"Endpoint {ep.name!r} is not ready: {ep.error}")
            columns = oip.to_columns(shape_of, req.inputs)
        except NotFound as exc:
            raise HttpError(404, exc, []) from None
        except Unavailable as exc:
            raise HttpError(503, exc, [(b"retry-after", b"1")]) from None
        except InvalidInput as exc:
            raise HttpError(422, exc, []) from None
        sticky = self._sticky(ep, headers, req.parameters)
        outcome = await self._predict(
            ep,
            columns,
            version=version,
            request_id=request_id,
            sticky=sticky,
            protocol="oip",
            start=start,
        )
        try:
            body_out, extra = oip.render_infer(outcome.served, outcome.prediction, req, request_id)
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        marks = self._done(ep, outcome, "oip", request_id, start, sticky)
        return 200, body_out, [(k.encode(), v.encode()) for k, v in extra.items()] + marks

    def _only(self) -> Endpoint:
        eps = list(self.endpoints.endpoints.values())
        if len(eps) != 1:
            served = sorted(self.endpoints.endpoints)
            raise HttpError(
                404,
                NotFound(
                    "/invocations answers for a server with one model; this one serves "
                    f"{', '.join(served)}: use /v1/models/NAME/predict or /v2/models/NAME/infer",
                    details={"served": served},
                ),
                [],
            )
        return eps[0]

    async def _invocations(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep = self._only()
        body = await self._body(receive, headers)
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise HttpError(
                415,
                InvalidInput(
                    f"/invocations takes application/json here, not {ctype}",
                    details={"received": ctype},
                ),
                [],
            )
        try:
            doc = formats.loads(body)
            columns = formats.mlflow_columns(doc)
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        sticky = self._sticky(ep, headers, None)
        outcome = await self._predict(
            ep,
            columns,
            version=None,
            request_id=request_id,
            sticky=sticky,
            protocol="mlflow",
            start=start,
        )
        marks = self._done(ep, outcome, "mlflow", request_id, start, sticky)
        return 200, formats.mlflow_response(outcome.prediction), [*_JSON, *marks]

    def _strata_target(self, path: str) -> tuple[Endpoint, str | None, str]:
        rest = path[len("/v1/models/") :]
        ref, _, action = rest.rpartition("/")
        ref = unquote(ref)
        version = None
        if "@" in ref:
            name, _, alias = ref.partition("@")
            ep = self._endpoint(name)
            if ep.ref.alias != alias:
                raise HttpError(
                    404,
                    NotFound(
                        f"Endpoint {ep.name!r} serves {ep.ref.text}, not alias {alias!r}",
                        details={"endpoint": ep.name, "served": ep.ref.text},
                    ),
                    [],
                )
        elif "/" in ref:
            name, _, version = ref.partition("/")
            ep = self._endpoint(name)
        else:
            ep = self._endpoint(ref)
        return ep, version, action

    async def _strata(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep, version, action = self._strata_target(scope["path"])
        body = await self._body(receive, headers)
        try:
            doc = formats.loads(body)
            columns, key = formats.strata_columns(doc)
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        if action == "explain":
            return await self._explain(ep, version, columns, request_id)
        sticky = (
            key
            if ep.policy.sticky_key.startswith("field:") and key
            else self._sticky(ep, headers, doc)
        )
        outcome = await self._predict(
            ep,
            columns,
            version=version,
            request_id=request_id,
            sticky=sticky,
            protocol="strata",
            start=start,
        )
        marks = self._done(ep, outcome, "strata", request_id, start, key)
        body_out = formats.strata_response(
            outcome.served, outcome.prediction, request_id=request_id, path=outcome.path
        )
        return 200, body_out, [*_JSON, *marks]

    async def _explain(
        self, ep: Endpoint, version: str | None, columns: Any, request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        from strata.serving.explain import explain_rows

        try:
            served = ep.by_version(version) if version is not None else ep.primary
        except NotFound as exc:
            raise HttpError(404, exc, []) from None
        if served is None:
            raise HttpError(
                503, Unavailable(f"Endpoint {ep.name!r} is not ready"), [(b"retry-after", b"1")]
            )
        try:
            checked = served.check(columns)
            doc = await asyncio.get_running_loop().run_in_executor(
                self.router.pool, explain_rows, served, checked
            )
        except InvalidInput as exc:
            raise HttpError(422, exc, []) from None
        doc.update({"model": served.name, "version": served.version, "request_id": request_id})
        return 200, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), _JSON


def unauthenticated() -> Unauthenticated:
    return Unauthenticated(
        "Authentication required: send 'Authorization: Bearer <token>' "
        "(create one with `strata tokens create --user NAME`)"
    )
