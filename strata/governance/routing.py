"""What every layer's REST router shares: the service, permissions, JSON, blocking work.

A router (``<layer>/api.py``) parses, calls its layer's service *interface* and renders:

- :func:`service` returns the app's service for a layer, checked against the interface (never
  an embedded class: a route uses only what the interface promises);
- ``READ`` / ``WRITE`` / ``ADMIN`` are the route ``dependencies=`` lists, built on
  :func:`strata.governance.deps.require` (the one permission check, denied writes audited);
- :func:`json_response` renders models and containers (NaN/±inf as strings), :func:`empty`
  is the 204;
- :func:`run_blocking` (from :mod:`strata.core.threads`) runs a blocking service call in a
  worker thread from an ``async`` route, with the call context carried along;
- :func:`lean` marks an ``async def route(request)`` for the server's fast path (a dict
  lookup instead of FastAPI's routing and dependency solving, ~1 ms a call), and
  :func:`read_body` parses such a route's JSON body into its model with the same 400 as
  FastAPI's validation; :func:`body_schema` documents that body in the OpenAPI document;
- :func:`file_response` streams a stored file with its recorded digest in
  :data:`SHA256_HEADER`, for the client to verify
  (:meth:`strata.core.transport.HttpTransport.download_verified`).

It lives in governance rather than ``server/`` because routers sit in their layer packages,
below the server, and governance is the lowest layer that holds the permission dependency.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, BinaryIO, ParamSpec, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json, to_jsonable_python

from strata.core.errors import DigestMismatch, InvalidInput
from strata.core.principal import Permission
from strata.core.threads import run_blocking
from strata.core.transport import SHA256_HEADER
from strata.governance.deps import require

__all__ = [
    "ADMIN",
    "READ",
    "SHA256_HEADER",
    "WRITE",
    "body_schema",
    "empty",
    "file_response",
    "json_response",
    "lean",
    "read_body",
    "run_blocking",
    "service",
]

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
LeanRoute = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("strata.server")
DOWNLOAD_CHUNK = 1024 * 1024

READ = [Depends(require(Permission.READ))]
WRITE = [Depends(require(Permission.WRITE))]
ADMIN = [Depends(require(Permission.ADMIN))]


def service(request: Request, layer: str, interface: type) -> Any:
    """The app client's ``layer`` service (``client.data``, ``client.tracking``...).

    Raises TypeError if it does not implement ``interface`` (a wiring mistake, not bad input).
    Annotate the result with the interface: ``svc: DataService = service(...)`` (an abstract
    class cannot be a ``type[T]`` argument for mypy).
    """
    svc = getattr(request.app.state.client, layer)
    if not isinstance(svc, interface):
        raise TypeError(f"client.{layer} is a {type(svc).__name__}, not a {interface.__name__}")
    return svc


def json_response(obj: Any, status_code: int = 200, *, plain: bool = False) -> Response:
    """Render models and containers; NaN/±inf become ``"NaN"``/``"Infinity"``/``"-Infinity"``.

    Models are turned into plain values first (their own serializer would write ``null`` for
    a NaN); ``plain=True`` skips that for bodies built of dicts, lists and scalars only.
    """
    data = obj if plain else to_jsonable_python(obj, by_alias=True)
    body = to_json(data, inf_nan_mode="strings")
    return Response(body, status_code=status_code, media_type="application/json")


def lean(route: LeanRoute) -> LeanRoute:
    """Serve ``route`` (``async def route(request)``, permission dependencies only, no path
    parameters) through ``strata.server.fastpath``: same permission check, same handler,
    same errors, without FastAPI's per-request routing and dependency solving. For the hot
    read paths (an online lookup), where that machinery costs more than the work."""
    route.lean = True  # type: ignore[attr-defined]
    return route


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a lean route's JSON body (it reads the raw request, so
    FastAPI cannot see it). ``model`` must not nest other models (no ``$defs``)."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise TypeError(f"{model.__name__} nests models: declare its body another way")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def read_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: a 400 naming the first bad field otherwise,
    worded as the server's answer to FastAPI's validation errors."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw if raw.strip() else b"null")
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg")}
            for err in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "problem": "invalid request"}
        raise InvalidInput(
            f"Invalid request: {first['field'] or 'body'}: {first['problem']}",
            details={"errors": problems},
        ) from None


def empty() -> Response:
    """204 No Content."""
    return Response(status_code=204)


def file_response(
    reader: BinaryIO, *, sha256: str, what: str, filename: str | None = None
) -> StreamingResponse:
    """Stream an opened stored file in 1 MiB chunks; ``sha256`` (when known) goes in
    :data:`SHA256_HEADER`, ``filename`` in ``Content-Disposition``.

    The store checks the digest when the read reaches the end; if the bytes are corrupted the
    body stops short and the mismatch is logged: the client, hashing what it received, sees
    the mismatch against the header itself (a 200 is already on the wire).
    """
    headers = {SHA256_HEADER: sha256} if sha256 else {}
    if filename:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"

    def chunks() -> Iterator[bytes]:
        with reader:
            while True:
                try:
                    chunk = reader.read(DOWNLOAD_CHUNK)
                except DigestMismatch as exc:
                    log.error("served a corrupted file, %s: %s", what, exc.message)
                    return
                if not chunk:
                    return
                yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
