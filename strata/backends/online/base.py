"""The online-store interface every backend implements (one conformance suite runs them all).

Keys are opaque bytes (the feature layer encodes an entity's join-key values), values are
opaque bytes (the encoded feature values), and each entry carries its event time in epoch
microseconds. A write keeps, per key, the entry with the newest event time: an older value
arriving late (a backfill, a replayed push) never replaces a newer one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    ts_us: int
    value: bytes


class OnlineStore(ABC):
    """Latest value per (view, key)."""

    #: Where it stores (a path or a URL without credentials), for messages and records.
    display: str

    @abstractmethod
    def write(
        self, view: str, keys: Sequence[bytes], ts_us: Sequence[int], values: Sequence[bytes]
    ) -> int:
        """Upsert each (key, ts, value) unless the stored entry is newer; returns the count
        of entries given."""

    @abstractmethod
    def read(self, view: str, keys: Sequence[bytes]) -> list[Entry | None]:
        """The entry of each key, in order (None when there is none)."""

    @abstractmethod
    def delete_view(self, view: str) -> int:
        """Remove every entry of ``view``; returns how many there were (where known)."""

    @abstractmethod
    def close(self) -> None: ...


def open_online_store(uri: str, home: str) -> OnlineStore:
    """The store named by ``uri``: ``""``/``sqlite:`` (``$STRATA_HOME/online.db``),
    ``sqlite:///PATH`` or ``redis://...``."""
    from strata.core.errors import InvalidInput

    if uri in ("", "sqlite:", "sqlite://") or uri.startswith("sqlite:///"):
        from strata.backends.online.sqlite import SqliteOnlineStore

        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        return SqliteOnlineStore(path or f"{home}/online.db")
    if uri.startswith(("redis://", "rediss://", "unix://")):
        from strata.backends.online.redis import RedisOnlineStore

        return RedisOnlineStore(uri)
    raise InvalidInput(
        "online_uri must be empty (SQLite in STRATA_HOME), sqlite:///PATH or redis://HOST:PORT/DB",
        details={"field": "online_uri"},
    )
