"""The metadata database, on SQLite and PostgreSQL: migrations, sessions, errors, concurrency."""

from __future__ import annotations

import importlib
import multiprocessing
import pkgutil
import queue
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from strata.backends.context import Backends
from strata.backends.db import MIGRATIONS_DIR, Base, Database, normalize_db_uri
from strata.core.clock import utcnow
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound, Unavailable
from strata.governance.service import EmbeddedGovernance
from strata.governance.tables import UserRow


def _tables(db: Database) -> set[str]:
    with db.read_engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_migrations_apply_on_first_use(settings: Settings) -> None:
    backends = Backends(settings)
    try:
        db = backends.db  # first use migrates
        assert db.current() == db.head()
        assert {"gov_users", "gov_tokens", "gov_audit", "gov_audit_head"} <= _tables(db)
    finally:
        backends.close()


def test_head_is_the_single_newest_revision(settings: Settings) -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    heads = script.get_heads()
    assert len(heads) == 1, f"migrations must form one line, found heads {heads}"
    db = Database(settings.db_uri)
    try:
        assert db.head() == heads[0]
        assert db.current() is None  # nothing applied yet
    finally:
        db.dispose()


def test_upgrade_is_idempotent(settings: Settings) -> None:
    db = Database(settings.db_uri)
    try:
        head = db.upgrade()
        assert head == db.head() == db.current()
        assert db.upgrade() == head  # same instance: nothing to do
    finally:
        db.dispose()
    again = Database(settings.db_uri)  # a new process would see an up-to-date database
    try:
        assert again.current() == head
        assert again.upgrade() == head
        assert again.current() == head
        with again.read() as session:
            assert session.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        again.dispose()


def test_migrations_match_the_table_definitions(settings: Settings) -> None:
    """Autogenerate finds nothing to add or drop: every table of every layer has a migration."""
    import strata

    for module in pkgutil.walk_packages(strata.__path__, "strata."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)  # tables register on Base.metadata on import
    assert "gov_users" in Base.metadata.tables

    db = Database(settings.db_uri)
    try:
        db.upgrade()
        with db.read_engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], f"tables differ from their migrations (write a migration): {diff}"
    finally:
        db.dispose()


def test_write_commits_and_rolls_back_on_exception(settings: Settings) -> None:
    db = Database(settings.db_uri)
    db.upgrade()

    def user(name: str) -> UserRow:
        return UserRow(
            id=name, name=name, role="viewer", disabled=False, created_at=utcnow(), created_by="t"
        )

    try:
        with db.write() as session:
            session.add(user("kept"))
        with pytest.raises(NotFound, match="boom"):
            with db.write() as session:
                session.add(user("lost"))
                session.flush()  # the row reached the database inside the transaction
                raise NotFound("boom")
        with pytest.raises(sa.exc.IntegrityError):
            with db.write() as session:
                session.add(user("lost-too"))
                session.add(user("kept"))  # duplicate primary key fails the whole transaction
        with db.read() as session:
            names = set(session.scalars(sa.select(UserRow.name)))
        assert names == {"kept"}
    finally:
        db.dispose()


def test_read_objects_stay_usable_after_the_block(settings: Settings) -> None:
    db = Database(settings.db_uri)
    db.upgrade()
    try:
        with db.write() as session:
            session.add(
                UserRow(
                    id="1",
                    name="a",
                    role="viewer",
                    disabled=False,
                    created_at=utcnow(),
                    created_by="t",
                )
            )
        with db.read() as session:
            row = session.scalars(sa.select(UserRow)).one()
        assert row.name == "a"
        assert row.created_at is not None
    finally:
        db.dispose()


def test_check_passes_on_a_live_database(settings: Settings) -> None:
    db = Database(settings.db_uri)
    try:
        assert db.check() is None
    finally:
        db.dispose()


def test_check_fails_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """check() really asks the database: a garbage file behind the URI is Unavailable."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database, just bytes " * 200)
    db = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(Unavailable, match=r"garbage\.db"):
            db.check()
    finally:
        db.dispose()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
def test_unreachable_postgresql_is_unavailable_without_password(scheme: str) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = Database(f"{scheme}://strata:Sup3rS3cret@127.0.0.1:{port}/meta?connect_timeout=5")
    try:
        for call in (db.check, db.current, db.upgrade):
            with pytest.raises(Unavailable) as info:
                call()
            err = info.value
            assert "Sup3rS3cret" not in err.message
            assert "Sup3rS3cret" not in repr(err.details)
            assert "strata:***@127.0.0.1" in err.message
            assert err.details == {"backend": "postgresql"}
        with pytest.raises(Unavailable) as info:
            with db.read() as session:
                session.execute(sa.text("SELECT 1"))
        assert "Sup3rS3cret" not in info.value.message
    finally:
        db.dispose()


def test_unknown_scheme_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="mysql") as info:
        Database("mysql://u:p@h/db")
    assert info.value.details == {"field": "db_uri"}
    assert normalize_db_uri("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_uri("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'x.db'}")  # parents are created
    try:
        with db.read() as session:
            assert session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 60000
            assert session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        db.dispose()


# -- concurrency --------------------------------------------------------------------------------

WRITERS = 4
# Each user is two write transactions (user + token): 200 per process on SQLite, the embedded
# default whose single-writer lock is the point; PostgreSQL runs a lighter round of the same.
USERS_PER_WRITER = {"sqlite": 100, "postgresql": 40}


def _hammer(db_uri: str, worker: int, users: int, go: Any, results: Any) -> None:
    """One writer process: create users and tokens as fast as it can; report its errors."""
    db = Database(db_uri)
    gov = EmbeddedGovernance(db)
    errors: list[str] = []
    go.wait(60)
    for i in range(users):
        name = f"w{worker}-u{i}"
        try:
            gov.create_user(name, "editor")
            gov.create_token(name, name=f"t{i}")
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    db.dispose()
    results.put((worker, errors))


def test_concurrent_writer_processes(settings: Settings) -> None:
    Backends(settings).db.dispose()  # migrate once, up front
    users = USERS_PER_WRITER["sqlite" if settings.db_uri.startswith("sqlite") else "postgresql"]
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(settings.db_uri, w, users, go, results))
        for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    db = Database(settings.db_uri)
    gov = EmbeddedGovernance(db)
    time.sleep(0.2)
    go.set()
    # While the writers run, the chain verifies at every moment (one consistent snapshot).
    reports: dict[int, list[str]] = {}
    verified_while_writing = 0
    deadline = time.monotonic() + 120
    try:
        while len(reports) < WRITERS:
            assert time.monotonic() < deadline, "writers did not finish in 120 s"
            midway = gov.verify_audit()
            assert midway.ok, midway.reason
            verified_while_writing += 1
            try:
                worker, errors = results.get(timeout=0.05)
            except queue.Empty:
                continue
            reports[worker] = errors
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        assert {w: errs for w, errs in reports.items() if errs} == {}
        assert verified_while_writing > 1
        names = {u.name for u in gov.list_users()}
        expected = {f"w{w}-u{i}" for w in range(WRITERS) for i in range(users)}
        assert names == expected
        assert len(gov.list_tokens()) == WRITERS * users
        verification = gov.verify_audit()
        assert verification.ok, verification.reason
        assert verification.checked == 2 * WRITERS * users
        records = gov.list_audit(limit=10_000)
        assert [r.seq for r in records] == list(range(1, verification.checked + 1))
        assert {r.outcome for r in records} == {"ok"}
    finally:
        db.dispose()
