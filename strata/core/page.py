"""One page of a list that can grow, and the one page-token format every layer uses.

A token is URL-safe base64 of a small JSON object (``{"offset": 200}`` for offset paging,
``{"after_seq": 1234}`` or ``{"before_us": ..., "before_id": "..."}`` for keyset paging);
clients pass it back unchanged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel

from strata.core.errors import InvalidInput

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_page_token`` back to get the next one (None at end)."""

    items: list[T]
    next_page_token: str | None = None

    def __iter__(self) -> Any:  # iterate items, not fields
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:  # callers that indexed the lists pages replaced
        return self.items[index]


def encode_page_token(key: str, value: int) -> str:
    """The token of the page that starts after ``key = value`` (an offset, a sequence...)."""
    return base64.urlsafe_b64encode(json.dumps({key: value}).encode()).decode()


#: The largest offset or sequence a page token may hold (a database BIGINT).
MAX_POSITION = 2**63 - 1
#: The longest token decoded (this module's are under 200 characters): a longer one is refused
#: unread, so a forged token cannot make the JSON parser recurse or allocate much.
MAX_TOKEN_LENGTH = 1024


def _read(token: str) -> Any:
    """The JSON inside ``token``; InvalidInput when it is longer than any token made here or
    is not base64 of JSON (nested past the parser's depth included)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidInput(
            f"Invalid page_token: longer than {MAX_TOKEN_LENGTH} characters; pass back the "
            "token a previous page returned",
            details={"field": "page_token"},
        )
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError) as exc:
        raise _unreadable() from exc


def _unreadable() -> InvalidInput:
    return InvalidInput(
        "Invalid page_token: pass back the token a previous page returned",
        details={"field": "page_token"},
    )


def decode_page_token(token: str | None, key: str) -> int:
    """``key``'s value in ``token`` (0 without one); InvalidInput for a token not made by
    :func:`encode_page_token` with that key, or a negative value."""
    if not token:
        return 0
    doc = _read(token)
    try:
        value = int(doc[key])
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable() from exc
    if not 0 <= value <= MAX_POSITION:
        raise InvalidInput("Invalid page_token", details={"field": "page_token"})
    return value


def encode_position(position: dict[str, int | str]) -> str:
    """The token of the page that starts after ``position``: a keyset of several fields (a
    time and an id, say), for a list whose order is not one number."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


#: The longest string field a position token may hold.
MAX_POSITION_TEXT = 128


def decode_position(token: str | None, fields: dict[str, type]) -> dict[str, int | str] | None:
    """The position in ``token`` (None without one): exactly ``fields``, each of its type (an
    ``int`` in 0..MAX_POSITION, a ``str`` of at most MAX_POSITION_TEXT characters);
    InvalidInput for any other token."""
    if not token:
        return None
    doc = _read(token)
    if not isinstance(doc, dict) or set(doc) != set(fields):
        raise _unreadable()
    for name, kind in fields.items():
        value = doc[name]
        if type(value) is not kind:
            good = False
        elif isinstance(value, int):
            good = 0 <= value <= MAX_POSITION
        else:
            good = isinstance(value, str) and len(value) <= MAX_POSITION_TEXT
        if not good:
            raise InvalidInput("Invalid page_token", details={"field": "page_token"})
    return cast(dict[str, int | str], doc)


def iterate_pages(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged list: ``fetch(page_token)`` is called from the first page
    (``None``) until a page comes back without ``next_page_token``."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.items
        token = page.next_page_token
        if not token:
            return
