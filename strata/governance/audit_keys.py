"""The audit log's lookup keys (actor, action, time), indexed in batches rather than per record.

Every mutating call appends one ``gov_audit`` record in its own transaction. Indexed there by
actor, action and time, each record also changed three more B-tree leaves: on SQLite three
more WAL pages of the ~10 a single MLflow ``log_metric`` call writes, the largest share of a
small write's cost after the row itself (docs/tracking.md). So the records themselves are
indexed by ``seq`` only, and their keys are copied into ``gov_audit_keys`` — indexed by
``(actor, seq)``, ``(action, seq)`` and ``ts_ms`` — once every :data:`KEYS_EVERY` records:
the record whose ``seq`` is a multiple of it copies the keys of every record since the last
copy (:func:`catch_up`, one ``INSERT ... SELECT``, in that record's transaction: the copy
and the records commit or roll back together, and the audit lock orders them).

A filtered listing (:func:`rows`) reads the copied keys through their indexes, then scans
only the records after the last copy (fewer than :data:`KEYS_EVERY`, unless records were
written by a server older than this table, which leaves its records to the next copy). Its
filters are applied to the records' own columns as well, so what is listed is always what the
records say. An unfiltered listing reads the records in ``seq`` order and never needs the
keys (it works on a database not yet migrated to this table).

The keys are outside the hash chain: an edited or deleted key could hide an intact record
from a filtered listing. ``verify`` therefore compares them with the records
(:func:`first_mismatch`) once the chain checks out, and :func:`rebuild` (``strata audit
rebuild-keys``) copies them again from the records, which are the truth.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.db import Database
from strata.governance.tables import AuditKeyRow, AuditRow

#: A record whose seq is a multiple of this copies the keys of the records since the last copy.
KEYS_EVERY = 256

_CATCH_UP = (
    "INSERT INTO gov_audit_keys (seq, ts_ms, actor, action) "
    "SELECT seq, ts_ms, actor, action FROM gov_audit "
    "WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM gov_audit_keys) AND seq <= ?"
)


def due(seq: int) -> bool:
    return seq % KEYS_EVERY == 0


def catch_up(db: Database, conn: Any, seq: int) -> None:
    """Copy the keys of the records up to ``seq`` not copied yet, in the caller's write
    transaction (a connection offering ``exec_driver_sql``: SQLAlchemy's, or the lean
    path's over ``sqlite3``)."""
    conn.exec_driver_sql(db.sql(_CATCH_UP), (seq,))


def rebuild(db: Database, conn: Any, head: int) -> tuple[int, int]:
    """Copy every record's keys again, from the records, in the caller's write transaction
    (which holds the audit lock, so no record is appended meanwhile): the keys table emptied,
    then caught up as the copies would have left it with records up to ``head`` — every
    record through the last multiple of :data:`KEYS_EVERY`, the rest to the next copy.
    Returns ``(keys copied, the copy mark)``. Whatever the table held is replaced (edited,
    deleted or added keys)."""
    mark = head - head % KEYS_EVERY
    conn.exec_driver_sql("DELETE FROM gov_audit_keys")
    catch_up(db, conn, mark)
    copied = conn.exec_driver_sql("SELECT COUNT(*) FROM gov_audit_keys").scalar()
    return int(copied or 0), mark


def copied_through(session: Session) -> int:
    """The newest record whose keys are copied (0: none)."""
    return session.scalar(sa.select(sa.func.max(AuditKeyRow.seq))) or 0


def rows(
    session: Session,
    *,
    actor: str | None,
    action: str | None,
    resource_type: str | None,
    since_ms: int | None,
    until_ms: int | None,
    limit: int,
    after_seq: int,
) -> list[AuditRow]:
    """Records after ``after_seq`` matching every filter given, in ``seq`` order, at most
    ``limit`` (``action`` ending in ``*``: a prefix)."""
    keyed = actor or action or since_ms is not None or until_ms is not None

    def filtered(stmt: sa.Select[Any], table: Any) -> sa.Select[Any]:
        if actor:
            stmt = stmt.where(table.actor == actor)
        if action:
            if action.endswith("*"):
                stmt = stmt.where(table.action.startswith(action[:-1], autoescape=True))
            else:
                stmt = stmt.where(table.action == action)
        if since_ms is not None:
            stmt = stmt.where(table.ts_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(table.ts_ms <= until_ms)
        return stmt

    records = sa.select(AuditRow)
    if resource_type:
        records = records.where(AuditRow.resource_type == resource_type)
    if not keyed:
        stmt = records.where(AuditRow.seq > after_seq).order_by(AuditRow.seq).limit(limit)
        return list(session.scalars(stmt))
    copied = copied_through(session)
    found: list[AuditRow] = []
    if copied > after_seq:
        through_keys = filtered(
            filtered(records, AuditRow).join(AuditKeyRow, AuditKeyRow.seq == AuditRow.seq),
            AuditKeyRow,
        )
        # Bounded by the copy read above: a copy committed since (PostgreSQL reads each
        # statement's own snapshot) must not list its records twice, here and in the tail.
        stmt = through_keys.where(AuditKeyRow.seq > after_seq, AuditKeyRow.seq <= copied)
        found = list(session.scalars(stmt.order_by(AuditKeyRow.seq).limit(limit)))
    if len(found) < limit:
        tail = filtered(records, AuditRow).where(AuditRow.seq > max(after_seq, copied))
        found += session.scalars(tail.order_by(AuditRow.seq).limit(limit - len(found)))
    return found


_KEY_DIFFERS = (
    "SELECT k.seq FROM gov_audit_keys k LEFT JOIN gov_audit a ON a.seq = k.seq "
    "WHERE a.seq IS NULL OR a.actor <> k.actor OR a.action <> k.action OR a.ts_ms <> k.ts_ms "
    "ORDER BY k.seq LIMIT 1"
)
_KEY_MISSING = (
    "SELECT a.seq FROM gov_audit a LEFT JOIN gov_audit_keys k ON k.seq = a.seq "
    "WHERE a.seq <= :copied AND k.seq IS NULL ORDER BY a.seq LIMIT 1"
)


def first_mismatch(session: Session) -> tuple[int, str] | None:
    """The first record whose copied keys are not its own — edited, deleted or added in
    ``gov_audit_keys``, which the hash chain does not cover — and why; None when they all
    agree. An edited key could hide an intact record from a filtered listing, so ``verify``
    reports it (its reads are one snapshot)."""
    differs = session.execute(sa.text(_KEY_DIFFERS)).scalar()
    missing = session.execute(sa.text(_KEY_MISSING), {"copied": copied_through(session)}).scalar()
    found = [
        (int(seq), what)
        for seq, what in (
            (differs, "the copied lookup keys of record {} (gov_audit_keys) differ from it"),
            (missing, "record {} has no copied lookup keys (gov_audit_keys)"),
        )
        if seq
    ]
    if not found:
        return None
    seq, what = min(found)
    return seq, (
        what.format(seq) + ": a filtered `strata audit list` could leave it out. The records "
        "and their chain are intact; the keys table was changed outside Strata. `strata audit "
        "rebuild-keys` copies the keys again from the records"
    )
