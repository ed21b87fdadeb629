"""The audit records' lookup keys, copied into ``gov_audit_keys`` in batches
(:mod:`strata.governance.audit_keys`): every filtered listing answers what a scan of the
records themselves answers, before and after the last copy (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from strata.backends.db import Database
from strata.core.clock import from_ms
from strata.core.config import Settings
from strata.governance import audit, audit_keys
from strata.governance.models import AuditRecord
from strata.governance.tables import AuditKeyRow

EVERY = 5
ACTORS = ("ann", "bob", "cy")
ACTIONS = ("run.log_batch", "run.create", "data.ingest", "data.delete")


def _append(db: Database, n: int) -> None:
    """``n`` records of varied actors, actions and resource types, one transaction each."""
    mix = zip(itertools.cycle(ACTORS), itertools.cycle(ACTIONS), strict=False)
    for i, (actor, action) in zip(range(n), mix, strict=False):
        with db.write() as session:
            audit.append(
                db,
                session,
                action=action,
                resource_type="run" if i % 3 else "dataset",
                resource_id=f"r{i}",
                actor=actor,
                request_id=f"q{i}",
            )


def _copied(db: Database) -> list[int]:
    with db.read() as session:
        return list(session.scalars(sa.select(AuditKeyRow.seq).order_by(AuditKeyRow.seq)))


def _scan(records: list[AuditRecord], **f: object) -> list[int]:
    """What the filters select, by reading every record (the listing's reference)."""
    out = []
    for r in records:
        action = str(f.get("action") or "")
        if f.get("actor") and r.actor != f["actor"]:
            continue
        if action and not (
            r.action.startswith(action[:-1]) if action.endswith("*") else r.action == action
        ):
            continue
        if f.get("resource_type") and r.resource_type != f["resource_type"]:
            continue
        if f.get("since") is not None and r.ts < f["since"]:  # type: ignore[operator]
            continue
        if f.get("until") is not None and r.ts > f["until"]:  # type: ignore[operator]
            continue
        if r.seq <= int(f.get("after_seq", 0)):  # type: ignore[call-overload]
            continue
        out.append(r.seq)
    return out[: int(f.get("limit", 100))]  # type: ignore[call-overload]


def test_keys_are_copied_every_batch_in_the_records_transaction(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, 2 * EVERY + 3)
    assert _copied(gov_db) == list(range(1, 2 * EVERY + 1))  # the last 3 wait for the next copy
    with pytest.raises(RuntimeError), gov_db.write() as session:  # the copying record fails
        _append_in(gov_db, session, 2)
        raise RuntimeError("rolled back")
    assert _copied(gov_db) == list(range(1, 2 * EVERY + 1))  # the copy rolled back with it
    _append(gov_db, 2)
    assert _copied(gov_db) == list(range(1, 3 * EVERY + 1))


def _append_in(db: Database, session: Session, n: int) -> None:
    for i in range(n):
        audit.append(db, session, action="x", resource_type="t", resource_id=str(i), actor="a")


@pytest.mark.parametrize(
    "filters",
    [
        {"actor": "bob"},
        {"action": "data.ingest"},
        {"action": "data.*"},
        {"action": "run.*", "actor": "cy"},
        {"actor": "ann", "resource_type": "dataset"},
        {"actor": "ann", "limit": 3},
        {"action": "run.*", "after_seq": 7, "limit": 4},
        {"action": "run.*", "after_seq": 12},  # after the last copy: the tail alone
        {"actor": "nobody"},
        {"resource_type": "dataset", "after_seq": 3},  # no key filter: the records alone
    ],
)
def test_a_filtered_listing_answers_what_a_scan_of_the_records_answers(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch, filters: dict[str, object]
) -> None:
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, 2 * EVERY + 4)  # 10 copied, 4 in the tail
    everything = audit.list_records(gov_db, limit=1000)
    assert [r.seq for r in everything] == list(range(1, 2 * EVERY + 5))
    expected = _scan(everything, **filters)
    got = [r.seq for r in audit.list_records(gov_db, **filters)]  # type: ignore[arg-type]
    assert got == expected
    bob = _scan(everything, actor="bob")  # the premise: matches on both sides of the copy
    assert min(bob) <= 2 * EVERY < max(bob)


def test_time_bounds_use_the_copied_keys_and_the_tail(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, 2 * EVERY + 4)
    with gov_db.write() as session:  # spread the records' times: record i at i seconds
        session.execute(sa.text("UPDATE gov_audit SET ts_ms = seq * 1000"))
        session.execute(sa.text("UPDATE gov_audit_keys SET ts_ms = seq * 1000"))
    everything = audit.list_records(gov_db, limit=1000)
    for since, until in ((3, 12), (9, 11), (12, 14), (1, 1), (20, 30)):
        bounds = {"since": from_ms(since * 1000), "until": from_ms(until * 1000)}
        got = [r.seq for r in audit.list_records(gov_db, **bounds)]  # type: ignore[arg-type]
        assert got == _scan(everything, **bounds) == list(range(since, min(until, 14) + 1))


def test_the_listing_follows_the_records_not_a_stale_key(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record changed behind the audit's back (its key copy not) is listed as it reads
    now: the filters apply to the record too (``verify`` reports the change itself)."""
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, EVERY)
    with gov_db.write() as session:
        session.execute(sa.text("UPDATE gov_audit SET actor = 'mallory' WHERE seq = 2"))
    assert [r.seq for r in audit.list_records(gov_db, actor="bob")] == [5]  # not 2 any more
    assert [r.seq for r in audit.list_records(gov_db, actor="ann")] == [1, 4]


def test_the_records_table_has_no_per_record_key_indexes(gov_db: Database) -> None:
    with gov_db.read() as session:
        inspector = sa.inspect(session.connection())
        on_records = {ix["name"] for ix in inspector.get_indexes("gov_audit")}
        on_keys = {tuple(ix["column_names"]) for ix in inspector.get_indexes("gov_audit_keys")}
    assert not on_records & {"ix_gov_audit_actor", "ix_gov_audit_action", "ix_gov_audit_ts_ms"}
    assert on_keys == {("actor", "seq"), ("action", "seq"), ("ts_ms",)}


def test_the_migration_copies_every_records_keys_and_its_downgrade_restores_the_indexes(
    settings: Settings,
) -> None:
    db = Database(settings.db_uri)
    try:
        with db.write_engine.begin() as conn:  # the revision before the keys table
            command.upgrade(db._alembic_config(conn), "c41d7e2a9b10")
        _append(db, 7)
        with db.write_engine.begin() as conn:
            command.upgrade(db._alembic_config(conn), "d8e4a61f2c05")
        assert _copied(db) == list(range(1, 8))
        assert [r.seq for r in audit.list_records(db, actor="bob")] == [2, 5]
        assert audit.verify(db).ok  # the records and their chain untouched
        with db.write_engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "c41d7e2a9b10")
        inspector = sa.inspect(db.write_engine)
        assert "gov_audit_keys" not in inspector.get_table_names()
        assert {ix["name"] for ix in inspector.get_indexes("gov_audit")} >= {
            "ix_gov_audit_actor",
            "ix_gov_audit_action",
            "ix_gov_audit_ts_ms",
        }
    finally:
        db.dispose()


def test_a_copy_committed_while_listing_lists_no_record_twice(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing reads how far the keys are copied, then the copied keys, then the tail:
    on PostgreSQL each statement sees what committed before it, so a copy can land between
    them. Simulated by reading an older copy mark than the keys hold."""
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, 3 * EVERY + 2)
    everything = audit.list_records(gov_db, limit=1000)
    monkeypatch.setattr(audit_keys, "copied_through", lambda session: EVERY)  # read before
    for filters in ({"actor": "bob"}, {"action": "run.*"}, {"actor": "cy", "after_seq": 2}):
        got = [r.seq for r in audit.list_records(gov_db, **filters)]  # type: ignore[arg-type]
        assert got == _scan(everything, **filters)


@pytest.mark.parametrize(
    ("tamper", "seq", "says"),
    [
        ("UPDATE gov_audit_keys SET actor = 'nobody' WHERE seq = 4", 4, "differ"),
        ("DELETE FROM gov_audit_keys WHERE seq = 3", 3, "has no copied"),
        # A key past the records moves the copy mark: the records after the real mark are
        # then looked up through keys they do not have.
        ("INSERT INTO gov_audit_keys VALUES (99, 0, 'ghost', 'x')", EVERY + 1, "has no copied"),
    ],
)
def test_verify_reports_lookup_keys_changed_outside_strata(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch, tamper: str, seq: int, says: str
) -> None:
    """The keys are outside the hash chain: an edited key could hide an intact record from a
    filtered listing, so verify compares them with the records."""
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, EVERY + 2)
    assert audit.verify(gov_db).ok
    with gov_db.write() as session:
        session.execute(sa.text(tamper))
    result = audit.verify(gov_db)
    assert not result.ok and result.first_broken_seq == seq and says in result.reason
    assert "chain are intact" in result.reason


@pytest.mark.parametrize(
    ("tamper", "reported"),
    [
        ("UPDATE gov_audit_keys SET actor = 'nobody' WHERE seq = 4", True),
        ("DELETE FROM gov_audit_keys WHERE seq = 3", True),
        ("INSERT INTO gov_audit_keys VALUES (99, 0, 'ghost', 'x')", True),
        # As a server older than the table leaves it: nothing copied, nothing wrong (the
        # listings scan the records), but every filtered listing scans them all.
        ("DELETE FROM gov_audit_keys", False),
    ],
)
def test_rebuild_copies_the_keys_again_from_the_records(
    gov_db: Database, monkeypatch: pytest.MonkeyPatch, tamper: str, reported: bool
) -> None:
    """The repair of what verify reports: the keys copied again from the records, as the
    copies would have left them, in one audited transaction; the records untouched."""
    monkeypatch.setattr(audit_keys, "KEYS_EVERY", EVERY)
    _append(gov_db, 2 * EVERY + 2)  # 12 records: keys through 10
    before = audit.list_records(gov_db, limit=1000)
    with gov_db.write() as session:
        session.execute(sa.text(tamper))
    assert audit.verify(gov_db).ok is not reported

    done = audit.rebuild_keys(gov_db)
    assert (done.keys_copied, done.copied_through_seq) == (2 * EVERY, 2 * EVERY)
    assert _copied(gov_db) == list(range(1, 2 * EVERY + 1))
    assert audit.verify(gov_db).ok
    everything = audit.list_records(gov_db, limit=1000)
    assert everything[:-1] == before  # the records and their chain as they were
    last = everything[-1]
    assert (last.seq, last.action, last.resource_type) == (13, "audit.rebuild_keys", "audit")
    assert last.details == {"keys_copied": 2 * EVERY, "copied_through_seq": 2 * EVERY}
    for filters in ({"actor": "nobody"}, {"actor": "ann"}, {"action": "data.*"}):
        got = [r.seq for r in audit.list_records(gov_db, **filters)]  # type: ignore[arg-type]
        assert got == _scan(everything, **filters)
    _append(gov_db, 2)  # the next copy (at 15) goes on from the rebuilt mark
    assert _copied(gov_db) == list(range(1, 3 * EVERY + 1))
    assert audit.verify(gov_db).ok


def test_rebuild_on_an_empty_log_copies_nothing_and_is_audited(gov_db: Database) -> None:
    done = audit.rebuild_keys(gov_db)
    assert (done.keys_copied, done.copied_through_seq) == (0, 0)
    assert [r.action for r in audit.list_records(gov_db)] == ["audit.rebuild_keys"]
    assert audit.verify(gov_db).ok
