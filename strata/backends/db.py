"""The metadata database: SQLAlchemy 2 engines, sessions and Alembic migrations.

SQLite (the embedded default) runs in WAL mode with a long busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE``: a writer takes the write lock up front and waits
for it, instead of failing with "database is locked" when a read lock cannot be upgraded.
Reads use deferred transactions on a separate engine, so readers never queue behind writers.
PostgreSQL (``postgresql+psycopg://``) uses one engine; serialisation points (the audit
chain, migrations) take advisory locks.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, Unavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime column, on every backend.

    SQLite keeps no zone and hands back naive values; this type stores UTC and always
    returns aware UTC datetimes (naive values written are taken as UTC).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The one declarative base every layer's ``tables.py`` derives from."""

    metadata = sa.MetaData(naming_convention=_NAMING)


def normalize_db_uri(uri: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver; reject unknown schemes."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg:" + uri.split(":", 1)[1]
    if scheme not in SUPPORTED_SCHEMES:
        raise InvalidInput(
            f"Unsupported metadata database URI scheme {scheme!r}; "
            f"expected one of: sqlite:///PATH, postgresql+psycopg://USER@HOST/DB",
            details={"field": "db_uri"},
        )
    return uri


#: SQLite reads the database file through a memory map of at most this many bytes (``PRAGMA
#: mmap_size``; SQLite's default is none). Without it each connection keeps its own page cache
#: of 2 MB: a database past that re-reads pages with a system call and a copy each, and an
#: MLflow search of 343 of 2,000 runs (a 7.8 MB database) cost 11.0 ms of CPU instead of 9.9.
#: The map is the operating system's page cache, shared by every connection and process (a
#: bigger per-connection ``cache_size`` would hold a copy per pooled connection).
SQLITE_MMAP_BYTES = 256 * 2**20

# sqlite3 binds int, float, str and bytearray parameters as they are, but sends bytes and bool
# (metric blocks' packed arrays, a latest metric's NaN flag) through its adaptation protocol
# first: a miss in its adapter registry, then ``__adapt__`` and ``__conform__`` looked up and
# not found, formatting an AttributeError each time — about 2,500 instructions a parameter,
# four per single ``log_metric``. Registered adapters are found at the first step; these bind
# the very values sqlite3 would have bound (the bytes themselves, 0 or 1), in every sqlite3
# connection of the process (SQLAlchemy's included).
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(bool, int)


def _sqlite_engine(uri: str, immediate: bool) -> Engine:
    engine = sa.create_engine(uri, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # LIKE is case-sensitive on PostgreSQL and in MLflow's grammar; make SQLite agree.
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


if TYPE_CHECKING:
    from strata.backends.artifacts import ArtifactStore
    from strata.backends.keys import KeyRing

_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=\s*['\"]?([0-9A-Za-z_]+|None)['\"]?\s*$")


@functools.cache
def migration_head() -> str:
    """The single head of the migration history.

    Read from the revision files' ``revision``/``down_revision`` lines: importing Alembic to
    ask costs ~0.3 s on every CLI command. A history this cannot read plainly (a merge, a
    branch) is left to Alembic's ScriptDirectory.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _REVISION.match(line)
            if match:
                found[match.group(1)] = match.group(2)
        if "revision" not in found or "down_revision" not in found:
            break
        revisions.add(found["revision"])
        parents.add(found["down_revision"])
    else:
        heads = revisions - parents
        if len(heads) == 1:
            return heads.pop()
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head())


class Database:
    """Engines and transactional sessions over one metadata database."""

    def __init__(self, uri: str) -> None:
        self.uri = normalize_db_uri(uri)
        self.dialect = self.uri.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            path = self.uri.split(":///", 1)[1] if ":///" in self.uri else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.read_engine = _sqlite_engine(self.uri, immediate=False)
            self.write_engine = _sqlite_engine(self.uri, immediate=True)
        else:
            self.read_engine = self.write_engine = sa.create_engine(
                self.uri, pool_pre_ping=True, pool_size=10, max_overflow=20
            )
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self._upgraded = False
        self._upgrade_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        self._keys: KeyRing | None = None
        #: Where audit checkpoints are written (the wiring sets the artifact store).
        self.audit_store: ArtifactStore | None = None

    @property
    def keys(self) -> KeyRing:
        """The keys kept outside this database (audit HMAC, connection encryption); from the
        current settings unless the wiring set them (``Backends`` does)."""
        if self._keys is None:
            from strata.backends.keys import KeyRing
            from strata.core.config import load_settings

            self._keys = KeyRing.from_settings(load_settings())
        return self._keys

    @keys.setter
    def keys(self, value: KeyRing) -> None:
        self._keys = value

    @property
    def safe_uri(self) -> str:
        """The URI with any password masked, for messages and logs."""
        return redact_uri(self.uri)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; closing it on exit ends (rolls back) its transaction.

        Objects loaded in it stay readable after the block (they are detached, not expired).
        """
        try:
            with self._read() as session:
                yield session
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write session: commits on success, rolls back everything on any exception."""
        try:
            with self._write() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def lock(self, session: Session, key: int) -> None:
        """Serialise a critical section inside a write transaction (no-op on SQLite).

        SQLite write transactions are already exclusive (BEGIN IMMEDIATE); PostgreSQL takes a
        transaction-scoped advisory lock on ``key``.
        """
        if self.dialect == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def upsert(
        self,
        session: Session,
        table: Any,
        rows: list[dict[str, Any]],
        keys: list[str],
        update: list[str],
    ) -> None:
        """Insert ``rows``, replacing ``update`` columns where the ``keys`` already exist."""
        if not rows:
            return
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg_stmt = pg_insert(table)
            pg_stmt = pg_stmt.on_conflict_do_update(
                index_elements=keys, set_={c: pg_stmt.excluded[c] for c in update}
            )
            session.execute(pg_stmt, rows)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            lite_stmt = sqlite_insert(table)
            lite_stmt = lite_stmt.on_conflict_do_update(
                index_elements=keys, set_={c: lite_stmt.excluded[c] for c in update}
            )
            session.execute(lite_stmt, rows)

    def sql(self, text: str) -> str:
        """Raw SQL written with ``?`` placeholders, in this driver's paramstyle (cached)."""
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = text.replace("?", "%s") if self.dialect == "postgresql" else text
            self._sql_cache[text] = cached
        return cached

    def _unavailable(self, exc: DBAPIError) -> Unavailable:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        return Unavailable(
            f"Metadata database {self.safe_uri} is unavailable: {redact_uri(reason)}",
            details={"backend": self.dialect},
        )

    def check(self) -> None:
        """Raise Unavailable unless the database answers ``SELECT 1``."""
        try:
            with self.read_engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc

    # -- migrations -----------------------------------------------------------------------
    def _alembic_config(self, connection: Connection) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = connection
        return cfg

    def head(self) -> str:
        """The newest migration revision this code knows."""
        return migration_head()

    def current(self) -> str | None:
        """The revision the database is at, or None before the first migration."""
        try:
            with self.read_engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
                return None if row is None else str(row[0])
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc

    def upgrade(self) -> str:
        """Apply pending migrations (idempotent, safe when several processes race)."""
        with self._upgrade_lock:
            if self._upgraded:
                return self.head()
            head = self.head()
            if self.current() != head:
                from alembic import command

                try:
                    with self.write_engine.begin() as conn:
                        if self.dialect == "postgresql":
                            conn.execute(sa.text("SELECT pg_advisory_xact_lock(731000001)"))
                        command.upgrade(self._alembic_config(conn), "head")
                except DBAPIError as exc:
                    raise self._unavailable(exc) from exc
            self._upgraded = True
            return head

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()
