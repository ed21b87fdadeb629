"""ASGI middleware: request ids, Prometheus metrics, access logs, request-size limit."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.core.errors import PayloadTooLarge

log = logging.getLogger("strata.access")
errlog = logging.getLogger("strata.server")


class Metrics:
    """The HTTP metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "strata_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "strata_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        #: (method, route, status) → its counter and histogram children (``labels`` builds
        #: and locks per call); bounded, as callers choose the method.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._children) < 10_000:
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)


class _TooLarge(BaseException):
    """Raised from ``receive`` when a streamed body passes the limit.

    A BaseException on purpose: FastAPI turns any Exception raised while it reads a body into
    a 400 "error parsing the body", which would hide the 413 this must become.
    """


def request_id_of(headers: dict[bytes, bytes]) -> str:
    """The caller's ``X-Request-ID`` when it is short and printable, else a new id."""
    incoming = headers.get(b"x-request-id", b"").decode("latin-1")
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else ""
    return request_id or os.urandom(16).hex()  # 128 random bits, as uuid4().hex but cheaper


def observe(metrics: Metrics, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
    """Count and time a finished request by route template, and write its access log line."""
    template = getattr(scope.get("route"), "path", None) or "unmatched"
    method = scope.get("method", "")
    metrics.observe(method, template, status, elapsed)
    log.info(
        "%s %s %s %.1fms",
        method,
        scope.get("path", ""),
        status,
        elapsed * 1000,
        extra={"request_id": request_id, "status": status, "route": template},
    )


def internal_error_logged(scope: Scope, request_id: str) -> None:
    """The one place unexpected errors end: logged with the traceback (call it from the
    ``except`` block)."""
    errlog.exception(
        "Unhandled error on %s %s",
        scope.get("method"),
        scope.get("path", ""),
        extra={"request_id": request_id},
    )


async def internal_error(send: Send, scope: Scope, request_id: str) -> None:
    """Log the error being handled and answer a 500 that carries the request id and nothing
    internal (call it from the ``except`` block, before the response has started)."""
    internal_error_logged(scope, request_id)
    await internal_error_answer(send, request_id)


async def internal_error_answer(send: Send, request_id: str) -> None:
    """The 500 of :func:`internal_error`, for an error logged already."""
    await RequestMiddleware._send_json(
        send,
        500,
        {
            "error_code": "INTERNAL_ERROR",
            "message": f"Internal server error (request id {request_id}); "
            "the server log has the details",
            "details": {"request_id": request_id},
        },
    )


class RequestMiddleware:
    """Gives every request an id (``X-Request-ID``, echoed), times it, and limits its size.

    Bodies above ``max_bytes`` are refused with 413 before they reach a route, whether the
    size is announced in ``Content-Length`` or only discovered while streaming. Routes whose
    path starts with one of ``unlimited_prefixes`` (artifact uploads) stream any size.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_bytes: int,
        unlimited_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.unlimited = unlimited_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = request_id_of(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        path: str = scope.get("path", "")
        limited = not path.startswith(self.unlimited) if self.unlimited else True

        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if limited and declared > self.max_bytes:
                raise _TooLarge
            await self.app(scope, receive_wrapper if limited else receive, send_wrapper)
        except _TooLarge:
            if not started:
                await self._send_413(send_wrapper)
        except Exception:
            if not started:
                await internal_error(send_wrapper, scope, request_id)
            else:
                internal_error_logged(scope, request_id)
        finally:
            observe(self.metrics, scope, status, time.perf_counter() - start, request_id)

    async def _send_413(self, send: Any) -> None:
        err = PayloadTooLarge(
            f"Request body is larger than the limit of {self.max_bytes} bytes "
            "(setting STRATA_MAX_REQUEST_BYTES)",
            details={"limit": self.max_bytes},
        )
        await self._send_json(send, 413, err.to_payload(), close=True)

    @staticmethod
    async def _send_json(send: Any, status: int, payload: Any, close: bool = False) -> None:
        import orjson

        headers = [(b"content-type", b"application/json")]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(payload)})
