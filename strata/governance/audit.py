"""The hash-chained audit log.

Every mutating call appends one record in the same transaction as its change:
``hash = sha256(canonical JSON of the record's fields + prev_hash)``. ``verify`` walks the
chain in ``seq`` order and names the first record whose hash or link does not match, so an
altered, inserted or deleted row is found. Failed calls are recorded too, in a transaction of
their own (their change was rolled back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.db import Database
from strata.core.clock import from_ms, now_ms, to_ms
from strata.core.errors import StrataError
from strata.core.principal import current
from strata.governance.models import AuditRecord, AuditVerification
from strata.governance.tables import AuditHeadRow, AuditRow

GENESIS = "0" * 64
_AUDIT_LOCK_KEY = 731000002


def _digest(row: AuditRow) -> str:
    body = json.dumps(
        [
            row.seq,
            row.ts_ms,
            row.actor,
            row.action,
            row.resource_type,
            row.resource_id,
            row.request_id,
            row.outcome,
            row.details,
            row.prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def append(
    db: Database,
    session: Session,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one record inside the caller's write transaction."""
    db.lock(session, _AUDIT_LOCK_KEY)
    ctx = current()
    head = session.get(AuditHeadRow, 1)
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    row = AuditRow(
        seq=seq,
        ts_ms=now_ms(),
        actor=ctx.principal.name,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id[:256],
        request_id=ctx.request_id or "",
        outcome=outcome,
        details=json.dumps(details or {}, sort_keys=True, default=str),
        prev_hash=prev,
    )
    row.hash = _digest(row)
    session.add(row)
    if head is None:
        session.add(AuditHeadRow(id=1, seq=seq, hash=row.hash))
    else:
        head.seq, head.hash = seq, row.hash


@dataclass
class AuditScope:
    """Handed to the body of :func:`audited`: its session and the resource being changed."""

    session: Session
    resource_id: str
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def audited(
    db: Database,
    action: str,
    resource_type: str,
    resource_id: str = "",
    details: dict[str, Any] | None = None,
) -> Iterator[AuditScope]:
    """A write transaction whose success is audited in it, and whose failure is audited apart.

    The body may set ``scope.resource_id`` (e.g. to a new id) and add ``scope.details``.
    """
    scope: AuditScope | None = None
    try:
        with db.write() as session:
            scope = AuditScope(session, resource_id, dict(details or {}))
            yield scope
            append(
                db,
                session,
                action=action,
                resource_type=resource_type,
                resource_id=scope.resource_id,
                details=scope.details,
            )
    except Exception as exc:
        outcome = f"error:{exc.error_code}" if isinstance(exc, StrataError) else "error"
        rid = scope.resource_id if scope is not None else resource_id
        try:
            with db.write() as session:
                append(
                    db,
                    session,
                    action=action,
                    resource_type=resource_type,
                    resource_id=rid,
                    outcome=outcome,
                    details=dict(details or {}),
                )
        except StrataError:
            pass  # the database itself failed; the original error is the one to report
        raise


def record_denied(db: Database, action: str, resource_type: str, resource_id: str) -> None:
    """Audit a refused mutating request (its own transaction)."""
    with db.write() as session:
        append(
            db,
            session,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome="denied",
        )


def _to_model(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        ts=from_ms(row.ts_ms),
        actor=row.actor,
        action=row.action,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        request_id=row.request_id,
        outcome=row.outcome,
        details=json.loads(row.details or "{}"),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def list_records(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    after_seq: int = 0,
) -> list[AuditRecord]:
    """Records in ascending ``seq`` order, filtered; ``action`` may end in ``*`` (prefix)."""
    stmt = sa.select(AuditRow).where(AuditRow.seq > after_seq)
    if actor:
        stmt = stmt.where(AuditRow.actor == actor)
    if action:
        if action.endswith("*"):
            stmt = stmt.where(AuditRow.action.startswith(action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditRow.action == action)
    if resource_type:
        stmt = stmt.where(AuditRow.resource_type == resource_type)
    if since is not None:
        stmt = stmt.where(AuditRow.ts_ms >= to_ms(since))
    stmt = stmt.order_by(AuditRow.seq).limit(limit)
    with db.read() as session:
        return [_to_model(r) for r in session.scalars(stmt)]


def verify(db: Database, batch: int = 5000) -> AuditVerification:
    """Walk the whole chain; report the first broken record (altered, inserted or deleted)."""
    checked = 0
    prev_hash = GENESIS
    expected_seq = 1
    with db.read() as session:
        head = session.get(AuditHeadRow, 1)
        last_seq = 0
        while True:
            rows = session.scalars(
                sa.select(AuditRow)
                .where(AuditRow.seq > last_seq)
                .order_by(AuditRow.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if row.seq != expected_seq:
                    return AuditVerification(
                        ok=False,
                        checked=checked,
                        first_broken_seq=expected_seq,
                        reason=f"record {expected_seq} is missing (next present is {row.seq})",
                    )
                if row.prev_hash != prev_hash:
                    return AuditVerification(
                        ok=False,
                        checked=checked,
                        first_broken_seq=row.seq,
                        reason=f"record {row.seq} does not link to record {row.seq - 1}",
                    )
                if _digest(row) != row.hash:
                    return AuditVerification(
                        ok=False,
                        checked=checked,
                        first_broken_seq=row.seq,
                        reason=f"record {row.seq} was altered (its hash does not match)",
                    )
                prev_hash = row.hash
                expected_seq += 1
                checked += 1
                last_seq = row.seq
        head_seq = head.seq if head is not None else 0
        if head_seq != checked or (head is not None and head.hash != prev_hash):
            return AuditVerification(
                ok=False,
                checked=checked,
                first_broken_seq=checked + 1 if head_seq > checked else head_seq,
                reason=f"the chain head says {head_seq} records but {checked} were found",
            )
    return AuditVerification(ok=True, checked=checked)
