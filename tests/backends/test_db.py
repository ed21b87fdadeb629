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
from strata.backends.db import MIGRATIONS_DIR, SQLITE_MMAP_BYTES, Base, Database, normalize_db_uri
from strata.core.clock import utcnow
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound, Unavailable
from strata.governance.embedded import EmbeddedGovernance
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
            # read through a memory map (the OS page cache), not 2 MB of per-connection cache
            assert session.execute(sa.text("PRAGMA mmap_size")).scalar() == SQLITE_MMAP_BYTES
    finally:
        db.dispose()


# -- concurrency --------------------------------------------------------------------------------

WRITERS = 4
# Each user is two write transactions (user + token): 200 per process on SQLite, the embedded
# default whose single-writer lock is the point; PostgreSQL runs a lighter round of the same.
USERS_PER_WRITER = {"sqlite": 100, "postgresql": 40}
RUNS_PER_WRITER = 15  # tracking: create_run + log_batch (params, tags, metrics) + end_run
POINTS_PER_RUN = 40
COMMITS_PER_WRITER = 4  # data: versions of the writer's own dataset


def _hammer(settings: Settings, worker: int, users: int, ready: Any, results: Any) -> None:
    """One writer process: governance, tracking and data writes as fast as it can, after
    every writer (and the parent) reached the barrier; reports its errors and the wall-clock
    span of its writes."""
    import pandas as pd

    from strata.client import Client
    from strata.tracking.models import Metric, Param

    client = Client(settings=settings)
    gov, tracking, data = client.governance, client.tracking, client.data
    exp = tracking.get_experiment_by_name("hammer").experiment_id  # a read: connected
    errors: list[str] = []
    ready.wait(120)  # everyone imported and connected: start together
    first = time.time()

    def attempt(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as exc:
            errors.append(f"w{worker} {what}: {type(exc).__name__}: {exc}")
            return None

    for i in range(max(users, RUNS_PER_WRITER, COMMITS_PER_WRITER)):
        if i < users:
            name = f"w{worker}-u{i}"
            attempt(name, gov.create_user, name, "editor")
            attempt(name, gov.create_token, name, name=f"t{i}")
        if i < RUNS_PER_WRITER:
            run = attempt("create_run", tracking.create_run, exp, run_name=f"w{worker}-r{i}")
            if run is not None:
                rid = run.info.run_id
                attempt(
                    "log_batch",
                    tracking.log_batch,
                    rid,
                    metrics=[Metric("m", float(j), 0, j) for j in range(POINTS_PER_RUN)],
                    params=[Param("worker", str(worker)), Param("i", str(i))],
                )
                attempt("end_run", tracking.end_run, rid)
        if i < COMMITS_PER_WRITER:
            frame = pd.DataFrame({"w": [worker] * (i + 1), "i": list(range(i + 1))})
            attempt("ingest", data.ingest, frame, f"w{worker}", profile=False)
    last = time.time()
    client.close()
    results.put((worker, errors, first, last))


def test_concurrent_writer_processes(settings: Settings) -> None:
    """WRITERS processes write governance, tracking and data records at the same time: no
    lock errors, every record there exactly once, the audit chain intact while they write."""
    from strata.client import Client

    setup = Client(settings=settings)  # migrate once, up front
    exp = setup.tracking.create_experiment("hammer").experiment_id
    setup.close()
    users = USERS_PER_WRITER["sqlite" if settings.db_uri.startswith("sqlite") else "postgresql"]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(WRITERS + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(settings, w, users, ready, results))
        for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    db = Database(settings.db_uri)
    gov = EmbeddedGovernance(Backends.around(db))
    ready.wait(120)  # returns once every child is imported, connected and waiting
    # While the writers run, the chain verifies at every moment (one consistent snapshot).
    reports: dict[int, tuple[list[str], float, float]] = {}
    verified_while_writing = 0
    deadline = time.monotonic() + 240
    try:
        while len(reports) < WRITERS:
            assert time.monotonic() < deadline, "writers did not finish in 240 s"
            midway = gov.verify_audit()
            assert midway.ok, midway.reason
            verified_while_writing += 1
            try:
                worker, errors, first, last = results.get(timeout=0.05)
            except queue.Empty:
                continue
            reports[worker] = (errors, first, last)
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        assert [e for errs, _, _ in reports.values() for e in errs] == []
        assert verified_while_writing > 1
        # The writers really overlapped: each started before any other finished.
        starts = [first for _, first, _ in reports.values()]
        ends = [last for _, _, last in reports.values()]
        assert max(starts) < min(ends), f"writers ran one after another: {reports}"

        names = {u.name for u in gov.list_users()}
        expected = {f"w{w}-u{i}" for w in range(WRITERS) for i in range(users)}
        assert names == expected
        assert len(gov.list_tokens()) == WRITERS * users

        check = Client(settings=settings)
        try:
            runs = check.tracking.search_runs(exp, max_results=1000)
            assert sorted(r.info.run_name for r in runs) == sorted(
                f"w{w}-r{i}" for w in range(WRITERS) for i in range(RUNS_PER_WRITER)
            )
            for r in runs:
                assert r.info.status == "FINISHED", r.info
                assert r.params["worker"] == r.info.run_name[1:].split("-")[0]
                history = check.tracking.get_metric_history(r.info.run_id, "m")
                assert [m.step for m in history] == list(range(POINTS_PER_RUN))
            for w in range(WRITERS):
                versions = check.data.list_versions(f"w{w}")
                assert sorted(v.rows for v in versions) == list(range(1, COMMITS_PER_WRITER + 1))
                assert len(check.data.read_pandas(f"w{w}")) == COMMITS_PER_WRITER
        finally:
            check.close()

        verification = gov.verify_audit()
        assert verification.ok, verification.reason
        records = gov.list_audit(limit=10_000).items
        assert [r.seq for r in records] == list(range(1, verification.checked + 1))
        assert {r.outcome for r in records} == {"ok"}
        by_action: dict[str, int] = {}
        for r in records:
            by_action[r.action] = by_action.get(r.action, 0) + 1
        assert by_action["user.create"] == by_action["token.create"] == WRITERS * users
        assert by_action["data.ingest"] == WRITERS * COMMITS_PER_WRITER
    finally:
        db.dispose()


def test_sqlite_binds_bytes_and_bools_as_it_would_without_adapters() -> None:
    """strata.backends.db registers sqlite3 adapters for bytes and bool (a cheaper way to the
    same binding): the stored values and their SQLite types must be what sqlite3 stores for
    them unadapted — a blob of the same bytes, the integers 1 and 0 — in any connection."""
    import sqlite3

    blob = bytes(range(256))
    with sqlite3.connect(":memory:") as conn:
        row = conn.execute(
            "SELECT ?, typeof(?), ?, typeof(?), ?, ?", (blob, blob, True, True, False, None)
        ).fetchone()
    assert row == (blob, "blob", 1, "integer", 0, None)
    assert type(row[0]) is bytes
