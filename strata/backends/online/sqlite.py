"""The embedded online store: one SQLite file (WAL), a connection per thread.

Reads are a primary-key lookup on a ``WITHOUT ROWID`` table, well under 0.1 ms in-process;
writes are batched upserts that keep the newer event time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from strata.backends.online.base import Entry, OnlineStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online (
    view TEXT NOT NULL, key BLOB NOT NULL, ts INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID
"""
_UPSERT = (
    "INSERT INTO online (view, key, ts, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (view, key) DO UPDATE SET ts = excluded.ts, value = excluded.value "
    "WHERE excluded.ts >= online.ts"
)
_CHUNK = 500  # keys per IN (...) read; SQLite allows 32,766 parameters


class SqliteOnlineStore(OnlineStore):
    def __init__(self, path: str) -> None:
        self.path = path
        self.display = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn().execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # used by its own thread only; close() may run on another
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def write(
        self, view: str, keys: Sequence[bytes], ts_us: Sequence[int], values: Sequence[bytes]
    ) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                _UPSERT, ((view, k, int(t), v) for k, t, v in zip(keys, ts_us, values, strict=True))
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return len(keys)

    def read(self, view: str, keys: Sequence[bytes]) -> list[Entry | None]:
        conn = self._conn()
        if len(keys) == 1:
            row = conn.execute(
                "SELECT ts, value FROM online WHERE view = ? AND key = ?", (view, keys[0])
            ).fetchone()
            return [Entry(row[0], row[1]) if row else None]
        found: dict[bytes, Entry] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, ts, value in conn.execute(
                f"SELECT key, ts, value FROM online WHERE view = ? AND key IN ({marks})",
                (view, *chunk),
            ):
                found[key] = Entry(ts, value)
        return [found.get(k) for k in keys]

    def delete_view(self, view: str) -> int:
        cur = self._conn().execute("DELETE FROM online WHERE view = ?", (view,))
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
