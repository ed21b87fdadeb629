"""Upgrading a database that holds data: populated at each earlier revision, upgraded to
head, everything still readable and writable (SQLite and PostgreSQL).

Upgrades of an empty database are tested in test_db.py; this is the case users hit. Each
earlier revision of the Alembic history is applied to a fresh database, every layer whose
tables exist at that revision is populated through its service (each migration so far only
adds a layer's tables, so today's service writes what that revision's schema holds), then
the database is upgraded to head by first use, as a newer server does, and read back.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from strata.backends.context import Backends
from strata.backends.db import MIGRATIONS_DIR, Database
from strata.client import Client
from strata.core.config import Settings
from strata.data.embedded import EmbeddedData
from strata.governance.embedded import EmbeddedGovernance
from strata.tracking.embedded import EmbeddedTracking
from strata.tracking.models import Metric, Param, RunTag

SCRIPT = ScriptDirectory(str(MIGRATIONS_DIR))
HEAD = SCRIPT.get_current_head()
EARLIER = [r.revision for r in reversed(list(SCRIPT.walk_revisions())) if r.revision != HEAD]
FRAME = pd.DataFrame({"id": [1, 2, 3], "city": ["a", None, "c"], "fare": [1.5, 2.5, None]})
POINTS = 150


def _at(settings: Settings, revision: str) -> set[str]:
    """Migrate a fresh database to ``revision``; return the tables it has."""
    db = Database(settings.db_uri)
    try:
        with db.write_engine.begin() as conn:
            command.upgrade(db._alembic_config(conn), revision)
        assert db.current() == revision
        return set(sa.inspect(db.read_engine).get_table_names())
    finally:
        db.dispose()


def _matches_today(settings: Settings, table: str) -> bool:
    """Whether ``table`` at this revision has every column today's code writes. From the
    first migration that adds a column to a layer's table on, today's service cannot populate
    that table at older revisions; the upgrade of those revisions is still tested with the
    other layers' data."""
    from strata.backends.db import Base

    db = Database(settings.db_uri)
    try:
        have = {c["name"] for c in sa.inspect(db.read_engine).get_columns(table)}
    finally:
        db.dispose()
    return {c.name for c in Base.metadata.tables[table].columns} <= have


def _old_token(backends: Backends, user: str) -> str:
    """A token of ``user`` written with the columns ``gov_tokens`` had before ``scope``."""
    import secrets

    from strata.core.clock import utcnow
    from strata.core.ids import new_id
    from strata.governance.embedded import TOKEN_PREFIX, token_digest
    from strata.governance.tables import TokenRow, UserRow

    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tokens = TokenRow.__table__
    with backends.db.write() as session:
        user_id = session.scalar(sa.select(UserRow.id).where(UserRow.name == user))
        session.execute(
            sa.insert(tokens).values(
                id=new_id(),
                user_id=user_id,
                name="ci",
                prefix=secret[: len(TOKEN_PREFIX) + 4],
                digest=token_digest(secret),
                created_at=utcnow(),
            )
        )
    return secret


def test_the_history_has_earlier_revisions() -> None:
    assert len(EARLIER) >= 3, EARLIER  # governance, tracking, logged models before data


@pytest.mark.parametrize("revision", EARLIER)
def test_database_populated_at_an_earlier_revision_upgrades_to_head(
    settings: Settings, revision: str
) -> None:
    tables = _at(settings, revision)
    old = Backends(settings, migrate=False)  # today's services on the old schema
    expected: dict[str, object] = {}
    try:
        gov = EmbeddedGovernance(old)
        gov.create_user("ann", "editor")
        if _matches_today(settings, "gov_tokens"):
            secret = gov.create_token("ann", name="ci").secret
        else:  # before token scopes: a token as that schema stores it, to work after too
            secret = _old_token(old, "ann")
        if "trk_runs" in tables:
            trk = EmbeddedTracking(old)
            exp = trk.create_experiment("old-exp", tags={"team": "ml"}).experiment_id
            run = trk.create_run(exp, run_name="old-run")
            trk.log_batch(
                run.info.run_id,
                metrics=[Metric("loss", 1 / (s + 1), 1000 + s, s) for s in range(POINTS)],
                params=[Param("lr", "0.01")],
                tags=[RunTag("stage", "old")],
            )
            trk.end_run(run.info.run_id)
            expected["run"] = run.info.run_id
            expected["experiment"] = exp
        if "dat_datasets" in tables and _matches_today(settings, "dat_versions"):
            ingested = EmbeddedData(old).ingest(FRAME, "trips", profile=False)
            expected["version"] = ingested.version
        records = len(gov.list_audit(limit=10_000).items)
    finally:
        old.close()

    client = Client(settings=settings)  # first use upgrades to head
    try:
        client.governance.list_users()  # first use: the upgrade runs here
        head_db = Database(settings.db_uri)
        try:
            assert head_db.current() == HEAD
        finally:
            head_db.dispose()

        g = client.governance
        assert g.authenticate(secret).name == "ann"
        assert {u.name: u.role.value for u in g.list_users()}["ann"] == "editor"
        chain = g.verify_audit()
        assert chain.ok and chain.checked == records, chain
        g.create_user("bob", "viewer")  # the chain continues across the upgrade
        chain = g.verify_audit()
        assert chain.ok and chain.checked == records + 1, chain

        t = client.tracking
        if "run" in expected:
            got = t.get_run(str(expected["run"]))
            assert (got.info.run_name, got.info.status.value) == ("old-run", "FINISHED")
            assert got.params == {"lr": "0.01"} and got.tags.get("stage") == "old"
            history = t.get_metric_history(got.info.run_id, "loss")
            assert [(m.step, m.value, m.timestamp) for m in history] == [
                (s, 1 / (s + 1), 1000 + s) for s in range(POINTS)
            ]
            found = t.search_runs(str(expected["experiment"]), "params.lr = '0.01'")
            assert [r.info.run_id for r in found] == [got.info.run_id]
            assert t.get_experiment_by_name("old-exp").tags == {"team": "ml"}
        new_run = t.create_run(t.create_experiment("new-exp").experiment_id, run_name="new")
        t.log_batch(new_run.info.run_id, metrics=[Metric("loss", 0.5, 0, 0)])
        assert len(t.get_metric_history(new_run.info.run_id, "loss")) == 1

        d = client.data
        if "version" in expected:
            assert d.get_version("trips").id == expected["version"]
            assert d.read_pandas("trips").equals(FRAME)
        assert d.ingest(FRAME.head(2), "trips").rows == 2  # a new version on top
        assert d.read_pandas("trips").equals(FRAME.head(2))
    finally:
        client.close()


def test_downgrading_past_token_scopes_revokes_the_service_tokens(settings: Settings) -> None:
    """Without ``gov_tokens.scope`` a service token would act with its user's whole role:
    the downgrade revokes it; a plain token keeps working."""
    client = Client(settings=settings)  # at head
    try:
        client.governance.create_user("ops", "admin")
        service = client.governance.create_token("ops", scope="predict").secret
        plain = client.governance.create_token("ops").secret
    finally:
        client.close()
    db = Database(settings.db_uri)
    try:
        with db.write_engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "d8e4a61f2c05")
        with db.read_engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT digest, revoked_at FROM gov_tokens")).all()
    finally:
        db.dispose()
    from strata.governance.embedded import token_digest

    revoked = {digest: at is not None for digest, at in rows}
    assert revoked[token_digest(service)] and not revoked[token_digest(plain)]
