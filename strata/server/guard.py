"""ASGI middleware keeping browsers from driving the API on a user's behalf.

A page in a browser can send requests to a server on the user's machine: a form or
``fetch`` with ``Content-Type: text/plain`` needs no CORS preflight (CSRF), and a hostile
domain re-resolved to 127.0.0.1 (DNS rebinding) makes such requests same-origin. So:

- **Host allow-list.** With auth off, the ``Host`` header must be a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``) or in ``STRATA_ALLOWED_HOSTS``; with auth on, only
  when ``STRATA_ALLOWED_HOSTS`` is set (``*`` allows any). 400 otherwise.
- **No auth means loopback callers only.** With auth off, a request whose peer address is
  not loopback is refused (403) — whatever address uvicorn was bound to, however the app was
  started (``STRATA_AUTH=false uvicorn --factory ...`` included).
- **JSON APIs take JSON.** A request with a body to ``/api/``, ``/ajax-api/`` or
  ``/feedback`` must say ``application/json`` (or ``+json``, or ``application/x-ndjson``);
  streaming upload routes take any type. 415 otherwise: ``text/plain`` and form encodings
  are what a cross-site form can send without a preflight.
- **Origin on writes.** An unsafe method (POST, PUT, PATCH, DELETE) carrying an ``Origin``
  header must come from the server's own origin (scheme + Host) or one listed in
  ``STRATA_ALLOWED_ORIGINS``; 403 otherwise. Clients that send no ``Origin`` (SDKs, curl)
  are not browsers and pass.

HTML form posts of the web UI (paths outside ``/api/`` and ``/ajax-api/``) are left to the
UI's own CSRF token check; they still get the Host and Origin rules.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: ``/feedback`` is monitoring's root route for labels (a JSON API outside ``/api/``).
JSON_PREFIXES = ("/api/", "/ajax-api/", "/feedback")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_TYPES = ("application/json", "application/x-ndjson")


def _split(value: str) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in value.split(",") if v.strip())


def host_name(host_header: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:80`` → ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback_peer(client: tuple[str, int] | None) -> bool:
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return client[0] in ("testclient", "localhost")


class BrowserGuard:
    """See the module docstring. ``allowed_hosts``/``allowed_origins`` are comma-separated."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: bool,
        allowed_hosts: str = "",
        allowed_origins: str = "",
        any_type_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.auth = auth
        hosts = _split(allowed_hosts)
        self.any_host = "*" in hosts
        self.hosts = hosts | (LOOPBACK_HOSTS if not auth else frozenset())
        self.check_host = not auth or bool(hosts)
        self.origins = _split(allowed_origins)
        self.any_type = any_type_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, message = refusal
        body = orjson.dumps({"error_code": code, "message": message, "details": {}})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """(status, code, message) when the request is refused, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host_header = headers.get("host", "")
        if not self.auth and not _is_loopback_peer(scope.get("client")):
            return (
                403,
                "PERMISSION_DENIED",
                "This server runs without authentication, so it answers loopback callers "
                "only; enable auth to serve other machines",
            )
        if self.check_host and not self.any_host and host_name(host_header) not in self.hosts:
            return (
                400,
                "BAD_REQUEST",
                "Host header not allowed; set STRATA_ALLOWED_HOSTS to the names this server "
                "is reached by",
            )
        method = scope.get("method", "GET")
        if method not in UNSAFE:
            return None
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, scope, host_header):
            return (
                403,
                "PERMISSION_DENIED",
                "Cross-origin write refused: the Origin header is not this server; list "
                "trusted origins in STRATA_ALLOWED_ORIGINS",
            )
        path: str = scope.get("path", "")
        if path.startswith(JSON_PREFIXES) and not path.startswith(self.any_type):
            has_body = headers.get("content-length", "0") not in ("", "0") or (
                "transfer-encoding" in headers
            )
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            json_like = ctype in _JSON_TYPES or (
                ctype.startswith("application/") and ctype.endswith("+json")
            )
            if has_body and not json_like:
                return (
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"This API takes JSON bodies (Content-Type: application/json), not "
                    f"{ctype or 'an untyped body'}",
                )
        return None

    def _same_origin(self, origin: str, scope: Scope, host_header: str) -> bool:
        origin = origin.strip().lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        scheme = scope.get("scheme", "http")
        return parts.scheme == scheme and parts.netloc == host_header.strip().lower()
