"""The lean SQLite path of the hottest MLflow writes (issue 17: the client is the ceiling):
the store side; ``mlflow_api/hot.py`` is the route side.

A single ``log_metric`` through the regular route hops to a worker thread twice (the token
check, then the write) and runs seven statements through SQLAlchemy: about 0.5 ms of server
CPU, as much as half of what the mlflow client itself spends on the call. Here the same call
runs on the event loop, on one ``sqlite3`` connection of this process, in one transaction:

``BEGIN IMMEDIATE`` → one ``SELECT``: the token's row (the query
:meth:`EmbeddedGovernance.authenticate` runs), the run's stage and the audit chain's head →
the permission → the run's rows (:mod:`strata.tracking.batch_write`, the statements the
embedded service runs) → the audit record (:func:`strata.governance.audit.append`, given
that head; one call in 256 also copies the last 256 records' lookup keys,
:mod:`strata.governance.audit_keys`, about a millisecond on the event loop) → ``COMMIT``.

It serves only the plain success: an authenticated caller allowed to write, a valid body, an
active run, a free write lock. Anything else — no or a bad token, a token whose last use is
due to be recorded, a viewer, a bad field, an unknown or deleted run, a changed param, a
metric naming a model, the database locked by another writer (``busy_timeout`` is 0 here, so
the event loop never waits for a lock) — rolls back whatever it began and returns None, and
the regular route serves the request from the start: the same 400/401/403/404, the same
audit of refusals and failures. Both paths commit the same rows and the same audit record.

Durability is the regular path's: WAL with ``synchronous=NORMAL`` (a committed call survives
a crash of the server; a power loss can lose the last commits, never corrupt the database).
This connection does not checkpoint the WAL itself (a checkpoint writes and syncs the
database file: not work for the event loop): after every :data:`CHECKPOINT_AFTER` commits,
a ``RESTART`` checkpoint runs in a worker thread once the response is sent. It holds the write
lock while it copies the WAL into the database (lean calls meanwhile find the lock taken and
go the regular way, which waits), so the next write starts the WAL over; it waits at most
:data:`CHECKPOINT_WAIT` for the lock and for readers of older snapshots (a long search), so
writes never stall longer than that behind it, and tries again :data:`CHECKPOINT_AFTER`
commits later. (A passive checkpoint racing a stream of commits never catches up: the WAL
grew without bound, 133 MB after 3,000 calls, each page read searching more of its index.)
PostgreSQL and in-memory databases have no lean path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import make_url
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session

from strata.backends.db import SQLITE_MMAP_BYTES, Database
from strata.core.clock import utcnow
from strata.core.principal import Permission, Role, local_principal, role_allows
from strata.governance import audit
from strata.governance.deps import AuthState
from strata.governance.embedded import (
    _AUTH_QUERY,
    LAST_USED_RESOLUTION,
    TOKEN_PREFIX,
    token_digest,
)
from strata.governance.tables import AuditHeadRow
from strata.tracking import batch_write
from strata.tracking.batch_write import Batch
from strata.tracking.models import LifecycleStage
from strata.tracking.tables import RunRow

#: Lean commits between two WAL checkpoints: about 1,000 WAL pages, SQLite's own default
#: (a single-metric call writes about seven: its audit record's lookup keys are indexed in
#: batches, :mod:`strata.governance.audit_keys`). Each checkpoint costs 1.3-2 ms of CPU (its
#: syncs included) in a worker thread: 13-14 us a call, against 14-22 at every 100 (in
#: process, 4,000 calls, three alternating rounds).
CHECKPOINT_AFTER = 150
#: Seconds the checkpoint waits for the write lock and for readers (it blocks writers meanwhile).
CHECKPOINT_WAIT = 0.05


_ONE: sa.ColumnClause[Any] = sa.literal_column("1")
#: What the call needs to know before it writes, besides the caller: the run's stage and the
#: audit chain's head. Read in the statement that reads the token's row (the query
#: ``authenticate`` runs), as scalar subqueries: one statement instead of three.
_FACTS = (
    sa.select(RunRow.lifecycle_stage).where(RunRow.id == sa.bindparam("run_id")).scalar_subquery(),
    sa.select(AuditHeadRow.seq).where(AuditHeadRow.id == _ONE).scalar_subquery(),
    sa.select(AuditHeadRow.hash).where(AuditHeadRow.id == _ONE).scalar_subquery(),
)
_ACTIVE = LifecycleStage.ACTIVE.value


def _positional(query: sa.Select[Any]) -> tuple[str, tuple[str, ...]]:
    """``query`` in SQLite's SQL, and the names of its ``?`` parameters in order."""
    compiled = query.compile(dialect=sqlite_dialect.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


class _Result:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def scalar(self) -> Any:
        row = self._cursor.fetchone()
        return None if row is None else row[0]

    def first(self) -> Any:
        return self._cursor.fetchone()

    def all(self) -> Sequence[Any]:
        return self._cursor.fetchall()


class _Connection:
    """What :mod:`batch_write` and :func:`audit.append` use of SQLAlchemy's connection and
    session, over a ``sqlite3`` connection (same ``?`` placeholders, lists run as
    ``executemany``)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    def exec_driver_sql(self, statement: str, parameters: Any = ()) -> _Result:
        if isinstance(parameters, list):
            return _Result(self._raw.executemany(statement, parameters))
        return _Result(self._raw.execute(statement, parameters))

    # -- the Session methods audit.append calls ------------------------------------------
    def flush(self) -> None:
        """Nothing to flush: no ORM objects are pending on this path."""

    def connection(self) -> _Connection:
        return self


def _utc(value: Any) -> datetime:
    """A stored UtcDateTime (SQLite keeps it as naive UTC text)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


#: Query options of a SQLite URI this path can do without: it never waits for a lock.
_IGNORED_OPTIONS = frozenset({"timeout"})


def _sqlite_path(db: Database) -> str:
    """The database file, or "" where there is no lean path: not SQLite, in memory, or a URI
    option it cannot honour (the query is never part of the file name)."""
    if db.dialect != "sqlite":
        return ""
    url = make_url(db.uri)
    path = url.database or ""
    if path == ":memory:" or set(url.query) - _IGNORED_OPTIONS:
        return ""
    return path


class HotWriter:
    """The lean path's connection and transaction; one per app (the event loop's thread)."""

    def __init__(self, db: Database, auth: AuthState) -> None:
        self.db = db
        self.auth = auth
        self.path = _sqlite_path(db)
        self._raw: sqlite3.Connection | None = None
        self._conn = cast(_Connection, None)  # with _raw
        #: The connection the WAL checkpoints run on (in a worker thread, one at a time).
        self._checkpointer: sqlite3.Connection | None = None
        self._auth_sql, self._auth_params = _positional(_AUTH_QUERY.add_columns(*_FACTS))
        self._open_sql, _ = _positional(sa.select(*_FACTS))  # authentication off: run_id only
        self._commits = 0
        #: Requests this path served, and those it left to the regular route (tests read them).
        self.served = 0
        self.declined = 0
        self._checkpointing = threading.Lock()

    @property
    def available(self) -> bool:
        return bool(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._raw is None:
            raw = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            for pragma in (  # as backends.db sets them, but never wait for a lock
                "PRAGMA journal_mode=WAL",
                "PRAGMA busy_timeout=0",
                "PRAGMA synchronous=NORMAL",
                "PRAGMA foreign_keys=ON",
                "PRAGMA case_sensitive_like=ON",
                "PRAGMA wal_autocheckpoint=0",
                f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}",
            ):
                raw.execute(pragma)
            self._raw, self._conn = raw, _Connection(raw)
        return self._raw

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        with self._checkpointing:  # after a checkpoint running in a worker thread
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None

    def may_admit(self, token: str | None) -> bool:
        """Whether ``token`` can be one :meth:`log` admits (checked before the body is parsed)."""
        return not self.auth.enabled or (token is not None and token.startswith(TOKEN_PREFIX))

    def _admit(
        self, raw: sqlite3.Connection, token: str | None, run_id: str
    ) -> tuple[str, tuple[int, str]] | None:
        """(the caller's name, the audit chain's head) when ``authenticate`` admits the caller,
        its role may write and ``run_id`` is an active run; else None (the regular path
        decides, and words any refusal)."""
        if not self.auth.enabled:
            name = local_principal().name  # the embedded caller: an admin
            stage, seq, digest = raw.execute(self._open_sql, (run_id,)).fetchone()
        else:
            if token is None or not self.may_admit(token):
                return None
            values = {"digest": token_digest(token), "run_id": run_id}
            row = raw.execute(self._auth_sql, [values[p] for p in self._auth_params]).fetchone()
            if row is None:
                return None
            _, expires, revoked, last_used, _, name, role, disabled, scope, stage, seq, digest = row
            if revoked is not None or disabled or last_used is None or scope is not None:
                return None  # (a service token may not write: the regular route's 403)
            now = utcnow()
            if (expires is not None and _utc(expires) <= now) or (
                now - _utc(last_used) > LAST_USED_RESOLUTION  # the regular path records the use
            ):
                return None
            if not role_allows(Role(role), Permission.WRITE):
                return None
        if stage != _ACTIVE or seq is None:  # unknown or deleted run; an empty audit log
            return None
        return str(name), (int(seq), str(digest))

    def log(self, token: str | None, request_id: str | None, run_id: str, batch: Batch) -> int:
        """Write ``batch`` into ``run_id`` with its audit record; the record's seq, or 0 when
        nothing was written and the regular path must serve the request."""
        raw = self._connection()
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # another writer holds the lock
            self.declined += 1
            return 0
        try:
            admitted = self._admit(raw, token, run_id)
            if admitted is None:
                raw.execute("ROLLBACK")
                self.declined += 1
                return 0
            actor, head = admitted
            conn = self._conn
            batch_write.write(self.db, conn, run_id, batch, active=True)
            seq = audit.append(
                self.db,
                cast(Session, conn),
                action="run.log_batch",
                resource_type="run",
                resource_id=run_id,
                details=batch.details,
                actor=actor,
                request_id=request_id,
                head=head,
            )
            raw.execute("COMMIT")
        except Exception:  # any refusal or failure: nothing stays, the regular path answers
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            self.declined += 1
            return 0
        self._commits += 1
        self.served += 1
        return seq

    def housekeeping_due(self, seq: int) -> bool:
        return self._commits % CHECKPOINT_AFTER == 0 or seq % audit.CHECKPOINT_EVERY == 0

    def housekeeping(self, seq: int) -> None:
        """In a worker thread, after the response: the audit checkpoint the regular path
        writes every ``CHECKPOINT_EVERY`` records, and a WAL checkpoint that restarts the WAL."""
        audit.maybe_checkpoint(self.db, seq)
        if not self._checkpointing.acquire(blocking=False):
            return
        try:
            if self._checkpointer is None:  # kept: opening one each time cost a quarter more
                self._checkpointer = sqlite3.connect(
                    self.path, timeout=CHECKPOINT_WAIT, check_same_thread=False
                )
            self._checkpointer.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.OperationalError:
            return  # busy: the next one, or any regular commit, checkpoints
        finally:
            self._checkpointing.release()
