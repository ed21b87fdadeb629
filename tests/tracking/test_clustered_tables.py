"""Migration c41d7e2a9b10: a run's params, tags and latest metrics as WITHOUT ROWID tables on
SQLite (their rows in the primary key's B-tree), from a database populated at the revision
before it; PostgreSQL keeps its tables as they are."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import Conflict
from strata.tracking.embedded import EmbeddedTracking
from strata.tracking.models import Metric, Param, RunTag

BEFORE = "75b4353681e8"
TABLES = ("trk_params", "trk_tags", "trk_latest_metrics")
LONG = "x" * 8000  # a tag value at the limit: a row far past a B-tree cell


def _migrate(settings: Settings, revision: str, *, down: bool = False) -> None:
    db = Database(settings.db_uri)
    try:
        with db.write_engine.begin() as conn:
            (command.downgrade if down else command.upgrade)(db._alembic_config(conn), revision)
    finally:
        db.dispose()


def _definitions(settings: Settings) -> dict[str, str]:
    """Each table's stored definition (SQLite), and its indexes' names."""
    path = sa.make_url(settings.db_uri).database
    assert path
    with sqlite3.connect(path) as con:
        found = dict(
            con.execute(
                "SELECT name, sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?)", TABLES
            ).fetchall()
        )
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    return found


def _populate(settings: Settings) -> tuple[str, list[str]]:
    old = Backends(settings, migrate=False)  # today's service on the schema before
    try:
        trk = EmbeddedTracking(old)
        exp = trk.create_experiment("kv").experiment_id
        ids = []
        for i in range(30):
            run = trk.create_run(exp, run_name=f"r{i}", start_time=1000 + i)
            trk.log_batch(
                run.info.run_id,
                metrics=[
                    Metric("acc", i / 30, 5, 1),
                    Metric("acc", 0.99, 4, 0),  # an older step: not the latest
                    Metric("loss", math.nan if i % 7 == 0 else 1 / (i + 1), 5, 1),
                ],
                params=[Param("lr", "0.01" if i % 3 else "0.1"), Param("seed", str(i))],
                tags=[RunTag("note", LONG), RunTag("team", "a" if i % 2 else "b")],
            )
            ids.append(run.info.run_id)
        return exp, ids
    finally:
        old.close()


def _answers(t: EmbeddedTracking, exp: str) -> list[object]:
    found = t.search_runs(
        exp,
        "metrics.acc > 0.2 and params.lr = '0.01' and tags.team = 'a'",
        order_by=["metrics.loss DESC"],
    )
    return [
        (
            r.info.run_id,
            r.params,
            r.tags,
            {k: repr(v) for k, v in r.metrics.items()},
            r.metric_steps,
        )
        for r in found
    ]


def _answers_before(settings: Settings, exp: str) -> list[object]:
    """The searches' answers on the database as it stands, not migrated further."""
    old = Backends(settings, migrate=False)
    try:
        return _answers(EmbeddedTracking(old), exp)
    finally:
        old.close()


def test_sqlite_tables_are_rebuilt_without_rowid_keeping_every_row(
    sqlite_settings: Settings,
) -> None:
    settings = sqlite_settings
    _migrate(settings, BEFORE)
    before = _definitions(settings)
    assert not any(before[t].rstrip().endswith("WITHOUT ROWID") for t in TABLES)
    exp, ids = _populate(settings)
    expected = _answers_before(settings, exp)
    assert len(expected) >= 5

    client = Client(settings=settings)  # first use upgrades to head
    try:
        t = client.tracking
        assert _answers(t, exp) == expected  # same runs, same values, same order
        after = _definitions(settings)
        for table in TABLES:
            assert after[table].rstrip().endswith("WITHOUT ROWID"), after[table]
        # the same indexes, the primary key now being the table itself
        assert {n for n in after if n.startswith("ix_")} == {
            n for n in before if n.startswith("ix_")
        }
        run = ids[1]
        assert t.get_run(run).tags["note"] == LONG
        t.log_batch(run, metrics=[Metric("acc", 0.5, 9, 2)], tags=[RunTag("team", "c")])
        got = t.get_run(run)
        assert (got.metrics["acc"], got.metric_steps["acc"], got.tags["team"]) == (0.5, 2, "c")
        t.log_batch(run, params=[Param("lr", got.params["lr"])])  # the same value: accepted
        with pytest.raises(Conflict):
            t.log_batch(run, params=[Param("lr", "0.5")])
    finally:
        client.close()

    _migrate(settings, BEFORE, down=True)  # and back
    back = _definitions(settings)
    assert not any(back[t].rstrip().endswith("WITHOUT ROWID") for t in TABLES)
    old = Backends(settings, migrate=False)
    try:
        assert EmbeddedTracking(old).get_run(ids[1]).tags["team"] == "c"
    finally:
        old.close()


def test_postgresql_tables_are_left_as_they_are(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", db_uri=pg_url, artifact_uri=str(tmp_path / "a"))
    _migrate(settings, BEFORE)
    exp, _ = _populate(settings)
    expected = _answers_before(settings, exp)
    client = Client(settings=settings)
    try:
        assert _answers(client.tracking, exp) == expected
    finally:
        client.close()
