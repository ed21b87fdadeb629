"""Refuse NUL characters and lone surrogates in any text a request carries, before any route.

PostgreSQL cannot store ``\\u0000`` in text (it raised ``DataError``, a 500) and no database
can encode a lone UTF-16 surrogate such as ``\\ud800`` (JSON allows the escape; encoding it
failed later, a 500). Neither is ever meaningful in a name, a parameter or a tag, so every
backend gets the same 400, naming the field, from this one place:

- the path and the query string;
- JSON and NDJSON bodies (every string, keys included), form-encoded bodies (the UI).

Streaming upload routes (file bodies) are not inspected: their bytes are data.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.core.errors import InvalidInput

_JSON_TYPES = ("application/json", "application/x-ndjson")


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            return f"a lone surrogate (\\u{ord(ch):04x})"
    return None


def _shown(text: str) -> str:
    """``text`` with NULs and surrogates escaped, so an error can name it."""
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def _walk(value: Any, where: str) -> tuple[str, str] | None:
    """(field, problem) of the first bad string in a parsed JSON value."""
    if isinstance(value, str):
        problem = _problem(value)
        return (where, problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            field = f"{where}.{_shown(key)}" if where else _shown(key)
            problem = _problem(key)
            if problem:
                return (field, problem)
            found = _walk(item, field)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _orjson_accepts(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _check_json(body: bytes) -> tuple[str, str] | None:
    # bytes.find, not ``in``: ``sub in data`` first tries ``sub`` as an int and formats the
    # TypeError it raises (CPython 3.11), several times the cost of the search itself.
    if body.find(b"\\u") < 0:  # neither can appear unescaped in valid JSON: the common case
        return None
    if body.find(b"\\u0000") < 0 and _orjson_accepts(body):
        return None  # orjson refuses lone surrogates, so most bodies end here
    docs: list[Any] = []
    try:
        docs = [json.loads(body)]
    except ValueError:
        for line in body.splitlines():  # NDJSON
            try:
                docs.append(json.loads(line))
            except ValueError:
                continue  # malformed: the route says so
    for doc in docs:
        found = _walk(doc, "")
        if found:
            return found
    return None


#: What a query string must contain to hold a NUL or a JSON escape (checked further).
_QUERY_MARKS = (b"%00", b"\x00", b"%5Cu", b"%5cu")


def check_text(scope: Scope, body: bytes | None) -> InvalidInput | None:
    """The error for the first bad text of a request, or None."""
    path = scope.get("path", "")
    problem = _problem(path)
    if problem:
        return InvalidInput(f"The path contains {problem}", details={"field": "path"})
    query = scope.get("query_string", b"")
    if query and any(query.find(mark) >= 0 for mark in _QUERY_MARKS):
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            field = _shown(unquote(name.decode("latin-1"), errors="replace"))
            raw = unquote_to_bytes(value.replace(b"+", b" "))
            if b"\x00" in raw or b"\x00" in unquote_to_bytes(name):
                return InvalidInput(
                    f"Query parameter {field!r} contains a NUL character (\\u0000)",
                    details={"field": field},
                )
            found = _check_json(raw)  # JSON in a parameter (an upload's options)
            if found:
                inner = f"{field}.{found[0]}" if found[0] else field
                return InvalidInput(
                    f"Query parameter {inner!r} contains {found[1]}", details={"field": inner}
                )
    if not body:
        return None
    headers = dict(scope.get("headers") or [])
    ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if ctype in _JSON_TYPES or ctype.endswith("+json"):
        found = _check_json(body)
        if found:
            field, problem = found
            return InvalidInput(
                f"Text field {field or 'body'!r} contains {problem}: not allowed in any text",
                details={"field": field},
            )
    elif ctype == "application/x-www-form-urlencoded" and body.find(b"%00") >= 0:
        return InvalidInput(
            "A form field contains a NUL character (\\u0000)", details={"field": "form"}
        )
    return None


class TextGuard:
    """ASGI middleware applying :func:`check_text` (inside the size limit, so a buffered body
    is never larger than ``STRATA_MAX_REQUEST_BYTES``)."""

    def __init__(self, app: ASGIApp, *, skip_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.skip = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(self.skip) or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            error = check_text(scope, None)
            if error is None:
                await self.app(scope, receive, send)
            else:
                await _refuse(send, error)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # disconnected: let the app see it
                await self.app(scope, replay_body([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        error = check_text(scope, body)
        if error is not None:
            await _refuse(send, error)
            return
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, replay_body(replay, receive), send)


def replay_body(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` (a body already read) before the rest."""

    async def next_message() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return next_message


async def _refuse(send: Send, error: InvalidInput) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(error.to_payload())})
