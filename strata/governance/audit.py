"""The HMAC-chained audit log, with signed checkpoints outside the database.

Every mutating call appends one record in the same transaction as its change:
``hash = HMAC-SHA256(key, canonical JSON of the record's fields + prev_hash)``, the key kept
outside the metadata database (:class:`strata.backends.keys.KeyRing`: ``STRATA_AUDIT_KEY`` or
``audit.key`` in STRATA_HOME, mode 0600). Whoever can write the database but not read the key
cannot recompute a valid chain after an edit. ``verify`` walks the chain in ``seq`` order and
names the first record whose hash or link does not match, so an altered, inserted or deleted
row is found. Failed calls are recorded too, in a transaction of their own.

Deleting the newest records and rolling the head row back would still leave a consistent
chain, so every :data:`CHECKPOINT_EVERY` records (and on ``strata audit checkpoint``) a
signed checkpoint ``{seq, hash, ts_ms, mac}`` is written to the artifact store
(``audit/checkpoints/<seq>.json``). ``verify`` checks the chain against the latest valid
checkpoint: records missing below it (truncation) or a different hash at its seq (a rewrite)
are reported.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.db import Database
from strata.core.clock import from_ms, now_ms, to_ms
from strata.core.errors import StrataError
from strata.core.principal import current
from strata.governance import audit_keys
from strata.governance.models import AuditKeysRebuilt, AuditRecord, AuditVerification
from strata.governance.tables import AuditHeadRow, AuditRow

GENESIS = "0" * 64
_AUDIT_LOCK_KEY = 731000002
#: An automatic checkpoint is written after every this many records.
CHECKPOINT_EVERY = 1000
CHECKPOINT_PREFIX = "audit/checkpoints"
#: Attribute set on an exception once its failure is in the audit log (no second record).
AUDITED_MARK = "_strata_audited"
log = logging.getLogger("strata.audit")


#: What ``json.dumps(values, separators=(",", ":"), ensure_ascii=False)`` and
#: ``json.dumps(details, sort_keys=True, default=str)`` build (the same encoder, the same
#: bytes), made once: every mutating call hashes a record.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DETAILS = json.JSONEncoder(sort_keys=True, default=str)


def _digest_values(values: tuple[Any, ...], key: bytes | None) -> str:
    """HMAC-SHA256 under ``key`` of (seq, ts_ms, actor, action, resource_type, resource_id,
    request_id, outcome, details, prev_hash) as canonical JSON; plain SHA-256 for ``None``
    (how records were chained before HMAC: the legacy segment)."""
    body = _CANONICAL.encode(list(values)).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    mac = _keyed(key).copy()
    mac.update(body)
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 object that has taken ``key`` and nothing else, copied for each record:
    the same digest as ``hmac.digest(key, body, "sha256")``, without OpenSSL 3 looking its
    algorithms up again on every call (2.4 us a record that way, 1.6 copying)."""
    return hmac.new(key, digestmod=hashlib.sha256)


#: The action of the record that hands the chain over to a new key (signed by the old one).
ROTATE_ACTION = "audit.rotate_key"


def rotate_key(db: Database) -> dict[str, Any]:
    """Hand the chain over to a fresh audit key: a record naming the new key's id, signed by
    the old key, then the new key installed in ``audit.key`` (the old one kept in
    ``audit-keys/`` to verify the older segment) and a checkpoint signed by the new key.

    Run it with the server stopped: a running process keeps signing with the key it loaded.
    Raises Unavailable when the key comes from STRATA_AUDIT_KEY.
    """
    import secrets

    from strata.backends.keys import audit_key_id, install_audit_key

    old = db.keys.audit
    new = secrets.token_bytes(32)
    details = {"previous_key_id": audit_key_id(old), "key_id": audit_key_id(new)}
    with db.write() as session:
        seq = append(
            db,
            session,
            action=ROTATE_ACTION,
            resource_type="audit",
            resource_id=details["key_id"],
            details=details,
        )
        install_audit_key(db.keys, old, new)  # inside the chain's lock, before the commit
    checkpoint = write_checkpoint(db) if db.audit_store is not None else None
    return details | {"seq": seq, "checkpoint": checkpoint}


def _digest(row: AuditRow, key: bytes | None) -> str:
    return _digest_values(
        (
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
        ),
        key,
    )


def append(
    db: Database,
    session: Session,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    actor: str | None = None,
    request_id: str | None = None,
    head: tuple[int, str] | None = None,
) -> int:
    """Append one record inside the caller's write transaction; return its seq.

    The record names the caller bound to the running call (:func:`current`), or ``actor``
    and ``request_id`` when given (the server's lean path, which binds no context).
    Plain SQL on the session's connection: every mutating call pays for this, so it skips
    the ORM (about 10x cheaper per record). ``head``: the chain's head row ``(seq, hash)``
    as the caller read it in this write transaction (the lean path reads it with the
    token's row); read here when not given.
    """
    db.lock(session, _AUDIT_LOCK_KEY)
    session.flush()  # keep the ORM's pending rows ahead of ours
    conn = session.connection()
    if actor is None:
        ctx = current()
        actor, request_id = ctx.principal.name, ctx.request_id
    if head is None:
        head = conn.exec_driver_sql(
            db.sql("SELECT seq, hash FROM gov_audit_head WHERE id = 1")
        ).first()
    seq = 1 if head is None else int(head[0]) + 1
    prev = GENESIS if head is None else str(head[1])
    # Clip to the column widths: PostgreSQL rejects longer values (a denied call's action is
    # "METHOD /route/template", which can be long) and an audit write must never fail on it.
    values = (
        seq,
        now_ms(),
        actor[:64],
        action[:64],
        resource_type[:64],
        resource_id[:256],
        (request_id or "")[:64],
        outcome[:64],
        _DETAILS.encode(details or {}),
        prev,
    )
    digest = _digest_values(values, db.keys.audit)
    conn.exec_driver_sql(db.sql(_INSERT_AUDIT), (*values, digest))
    if head is None:
        conn.exec_driver_sql(
            db.sql("INSERT INTO gov_audit_head (id, seq, hash) VALUES (1, ?, ?)"), (seq, digest)
        )
    else:
        conn.exec_driver_sql(
            db.sql("UPDATE gov_audit_head SET seq = ?, hash = ? WHERE id = 1"), (seq, digest)
        )
    if audit_keys.due(seq):  # the lookup keys of the records since the last copy
        audit_keys.catch_up(db, conn, seq)
    return seq


# -- checkpoints --------------------------------------------------------------------------------
def _checkpoint_mac(key: bytes, seq: int, digest: str, ts_ms: int) -> str:
    body = f"strata-audit-checkpoint\n{seq}\n{digest}\n{ts_ms}".encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def write_checkpoint(db: Database) -> dict[str, Any] | None:
    """Sign the current chain head and store it in the artifact store; the checkpoint, or
    None when the log is empty. Raises Unavailable when no artifact store is wired."""
    from strata.core.errors import Unavailable

    store = db.audit_store
    if store is None:
        raise Unavailable("No artifact store is configured for audit checkpoints")
    with db.read() as session:
        head = session.get(AuditHeadRow, 1)
        if head is None:
            return None
        seq, digest = int(head.seq), str(head.hash)
    ts = now_ms()
    doc = {
        "seq": seq,
        "hash": digest,
        "ts_ms": ts,
        "mac": _checkpoint_mac(db.keys.audit, seq, digest, ts),
    }
    path = f"{CHECKPOINT_PREFIX}/{seq:016d}.json"
    store.put_bytes(path, json.dumps(doc).encode())
    return doc | {"path": path}


def maybe_checkpoint(db: Database, seq: int) -> None:
    if seq % CHECKPOINT_EVERY or db.audit_store is None:
        return
    try:
        write_checkpoint(db)
    except Exception:  # the change is committed; a missed checkpoint must not fail it
        log.exception("audit checkpoint at seq %s could not be written", seq)


def latest_checkpoint(db: Database) -> tuple[dict[str, Any] | None, str]:
    """(the newest checkpoint whose signature is valid, a note on invalid newer ones)."""
    store = db.audit_store
    if store is None:
        return None, ""
    try:
        entries = store.list(CHECKPOINT_PREFIX)
    except StrataError:
        return None, ""
    note = ""
    for info in sorted(entries, key=lambda i: i.path, reverse=True):
        if info.is_dir or not info.path.endswith(".json"):
            continue
        try:
            doc = json.loads(store.get_bytes(info.path))
            seq, digest, ts = int(doc["seq"]), str(doc["hash"]), int(doc["ts_ms"])
            good = any(  # the current key or one retired by a rotation
                hmac.compare_digest(str(doc["mac"]), _checkpoint_mac(k, seq, digest, ts))
                for k in db.keys.audit_keys.values()
            )
        except (StrataError, ValueError, KeyError, TypeError):
            good = False
        if good:
            return doc, note
        note = note or f"checkpoint {info.path} is not signed by this audit key (ignored)"
    return None, note


_INSERT_AUDIT = (
    "INSERT INTO gov_audit (seq, ts_ms, actor, action, resource_type, resource_id, request_id,"
    " outcome, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
            seq = append(
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
        # a failure of the database itself is not reported: the original error is
        with suppress(StrataError), db.write() as session:
            append(
                db,
                session,
                action=action,
                resource_type=resource_type,
                resource_id=rid,
                outcome=outcome,
                details=dict(details or {}),
            )
        with suppress(AttributeError):  # some exception types take no attributes
            setattr(exc, AUDITED_MARK, True)
        raise
    maybe_checkpoint(db, seq)


def record(
    db: Database,
    action: str,
    resource_type: str,
    resource_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Audit an event that writes nothing else (an alert fired, a webhook sent): one record
    in its own transaction."""
    with audited(db, action, resource_type, resource_id, details):
        return


def record_denied(db: Database, action: str, resource_type: str, resource_id: str) -> None:
    """Audit a refused mutating request (its own transaction)."""
    with db.write() as session:
        seq = append(
            db,
            session,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome="denied",
        )
    maybe_checkpoint(db, seq)


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
    until: datetime | None = None,
    limit: int = 100,
    after_seq: int = 0,
) -> list[AuditRecord]:
    """Records in ascending ``seq`` order, filtered; ``action`` may end in ``*`` (prefix);
    ``since``/``until`` bound the record time, both inclusive (looked up through the
    records' keys: :mod:`strata.governance.audit_keys`)."""
    with db.read() as session:
        found = audit_keys.rows(
            session,
            actor=actor,
            action=action,
            resource_type=resource_type,
            since_ms=None if since is None else to_ms(since),
            until_ms=None if until is None else to_ms(until),
            limit=limit,
            after_seq=after_seq,
        )
        return [_to_model(r) for r in found]


def rebuild_keys(db: Database) -> AuditKeysRebuilt:
    """Copy every record's lookup keys again from the records (``strata audit rebuild-keys``):
    the repair for what ``verify`` reports about ``gov_audit_keys``, which the hash chain does
    not cover. One write transaction under the audit lock (no record is appended meanwhile),
    audited as ``audit.rebuild_keys``; the records and their chain are not touched."""
    with audited(db, "audit.rebuild_keys", "audit") as scope:
        db.lock(scope.session, _AUDIT_LOCK_KEY)
        conn = scope.session.connection()
        head = conn.exec_driver_sql("SELECT seq FROM gov_audit_head WHERE id = 1").scalar()
        copied, mark = audit_keys.rebuild(db, conn, int(head or 0))
        scope.details.update({"keys_copied": copied, "copied_through_seq": mark})
    return AuditKeysRebuilt(keys_copied=copied, copied_through_seq=mark)


def _broken_link(
    session: Session, row: AuditRow, head: AuditHeadRow | None, checked: int, key: bytes | None
) -> AuditVerification:
    """Name the rewritten record when ``row`` does not link to its predecessor.

    Either the predecessor was rewritten with a recomputed hash, or ``row`` itself was
    (its ``prev_hash`` and hash). ``row`` is authentic when its own hash matches its fields
    and what comes after it (the next record's ``prev_hash``, or the chain head for the
    last record) still commits to that hash: then the predecessor is the altered one.
    """
    nxt = session.get(AuditRow, row.seq + 1)
    anchor = nxt.prev_hash if nxt is not None else (head.hash if head is not None else None)
    if row.seq > 1 and _digest(row, key) == row.hash and anchor == row.hash:
        return AuditVerification(
            ok=False,
            checked=checked - 1,
            first_broken_seq=row.seq - 1,
            reason=f"record {row.seq - 1} was replaced: record {row.seq} committed to a "
            "different hash for it",
        )
    return AuditVerification(
        ok=False,
        checked=checked,
        first_broken_seq=row.seq,
        reason=f"record {row.seq} does not link to record {row.seq - 1}",
    )


def verify(db: Database, batch: int = 5000) -> AuditVerification:
    """Walk the whole chain; report the first broken record (altered, inserted or deleted),
    then check it against the latest signed checkpoint (truncation, rewrites).

    Reads one consistent snapshot, so it can run while other processes append.
    """
    checkpoint, note = latest_checkpoint(db)
    result = _verify_chain(db, batch, checkpoint)
    if note and result.ok:
        result.reason = "; ".join(r for r in (result.reason, note) if r)
    return result


def _verify_chain(db: Database, batch: int, checkpoint: dict[str, Any] | None) -> AuditVerification:
    walk = _Walk(keys=db.keys.audit_keys, key=db.keys.audit)
    walk.cp_seq = int(checkpoint["seq"]) if checkpoint else 0
    with db.read() as session:
        if db.dialect == "postgresql":
            # One snapshot for the head and every batch, so records appended meanwhile are
            # not mistaken for records outside the chain (SQLite reads are snapshots anyway).
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = session.get(AuditHeadRow, 1)
        while True:
            rows = session.scalars(
                sa.select(AuditRow)
                .where(AuditRow.seq > walk.checked)
                .order_by(AuditRow.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                broken = walk.step(session, row, head)
                if broken is not None:
                    return broken
        broken = _check_ends(walk, checkpoint, head)
        if broken is not None:
            return broken
        mismatch = audit_keys.first_mismatch(session)
        if mismatch is not None:
            return walk.broken(*mismatch)
    reason = ""
    if walk.legacy_last:
        reason = (
            f"records 1..{walk.legacy_last} predate HMAC chaining (plain SHA-256): their order "
            "is checked, but anyone who could write the database could have rewritten them"
        )
    return AuditVerification(
        ok=True, checked=walk.checked, legacy_until=walk.legacy_last, reason=reason
    )


@dataclass
class _Walk:
    """The state of one walk down the chain, record by record (``step``)."""

    keys: dict[str, bytes]  # the current key and those retired by rotations
    key: bytes | None
    cp_seq: int = 0  # the signed checkpoint's record (0: none)
    cp_seen: str | None = None  # that record's hash as found
    legacy_last: int = 0  # the last record of a leading plain SHA-256 segment (pre-HMAC logs)
    checked: int = 0  # records 1..checked are intact
    prev_hash: str = GENESIS

    def broken(self, seq: int, reason: str) -> AuditVerification:
        return AuditVerification(
            ok=False, checked=self.checked, first_broken_seq=seq, reason=reason
        )

    def step(
        self, session: Session, row: AuditRow, head: AuditHeadRow | None
    ) -> AuditVerification | None:
        """Check the next record: present, linked, signed by the key in force; a rotation
        record hands over to its key. The failure, or None when intact."""
        expected = self.checked + 1
        if row.seq != expected:
            return self.broken(
                expected, f"record {expected} is missing (next present is {row.seq})"
            )
        if row.prev_hash != self.prev_hash:
            return _broken_link(session, row, head, self.checked, self.key)
        if row.seq == 1 or (self.key is None and _digest(row, None) != row.hash):
            # The first record (or the first after a legacy segment) says which key the
            # chain starts with; a legacy record only ever precedes keyed ones.
            found = [k for k in self.keys.values() if _digest(row, k) == row.hash]
            if found:
                self.key = found[0]
            elif row.seq == 1 and _digest(row, None) == row.hash:
                self.key = None
        if self.key is None and _digest(row, None) == row.hash:
            self.legacy_last = row.seq
        elif self.key is None or _digest(row, self.key) != row.hash:
            return self.broken(row.seq, f"record {row.seq} was altered (its hash does not match)")
        if row.action == ROTATE_ACTION and row.outcome == "ok":
            new_id = str(json.loads(row.details or "{}").get("key_id", ""))
            if new_id not in self.keys:
                return self.broken(
                    row.seq + 1,
                    f"record {row.seq} hands the chain to audit key {new_id}, which is "
                    "neither audit.key nor in audit-keys/ (restore it)",
                )
            self.key = self.keys[new_id]
        self.prev_hash = row.hash
        if row.seq == self.cp_seq:
            self.cp_seen = row.hash
        self.checked += 1
        return None


def _check_ends(
    walk: _Walk, checkpoint: dict[str, Any] | None, head: AuditHeadRow | None
) -> AuditVerification | None:
    """After the walk: the chain must reach the signed checkpoint and end at the head."""
    checked, cp_seq = walk.checked, walk.cp_seq
    head_seq = head.seq if head is not None else 0
    if checkpoint is not None and checked < cp_seq:  # truncated, head rolled back
        return walk.broken(
            checked + 1,
            f"records {checked + 1}..{cp_seq} are missing: the signed checkpoint at seq "
            f"{cp_seq} says they existed (the log was truncated)",
        )
    if checkpoint is not None and walk.cp_seen != checkpoint["hash"]:
        return walk.broken(
            cp_seq,
            f"record {cp_seq} differs from the signed checkpoint: the chain up to it was rewritten",
        )
    if head_seq > checked:  # the newest records were deleted
        return walk.broken(
            checked + 1,
            f"records {checked + 1}..{head_seq} are missing: the chain head says {head_seq} "
            f"records but {checked} were found",
        )
    if head_seq < checked:  # records appended behind the chain's back (or head removed)
        return AuditVerification(
            ok=False,
            checked=head_seq,
            first_broken_seq=head_seq + 1,
            reason=f"record {head_seq + 1} is not part of the chain: the chain head says "
            f"{head_seq} records but {checked} were found",
        )
    if head is not None and head.hash != walk.prev_hash:  # the last record was rewritten
        return AuditVerification(
            ok=False,
            checked=checked - 1,
            first_broken_seq=head_seq,
            reason=f"record {head_seq} does not match the chain head (it was replaced)",
        )
    return None
