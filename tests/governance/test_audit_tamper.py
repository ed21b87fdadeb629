"""The audit hash chain finds altered, deleted and smuggled-in rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.cli.main import app
from strata.core.config import Settings
from strata.governance import audit
from strata.governance.embedded import EmbeddedGovernance

RECORDS = 6


@pytest.fixture
def db(gov_db: Database) -> Database:
    """A database with RECORDS intact audit records (seq 1..RECORDS)."""
    gov = EmbeddedGovernance(Backends.around(gov_db))
    for i in range(RECORDS // 2):
        gov.create_user(f"user{i}", "viewer")
        gov.create_token(f"user{i}")
    assert gov.verify_audit().ok
    return gov_db


@pytest.fixture
def settings(gov_settings: Settings) -> Settings:
    return gov_settings


def _exec(db: Database, sql: str, **params: object) -> None:
    with db.write() as session:
        session.execute(sa.text(sql), params)


def _verify_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> tuple[int, str]:
    monkeypatch.setenv("STRATA_DB_URI", settings.db_uri)
    monkeypatch.setenv("STRATA_ARTIFACT_URI", settings.artifact_uri)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_intact_chain(db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    result = audit.verify(db)
    assert (result.ok, result.checked, result.first_broken_seq) == (True, RECORDS, None)
    code, out = _verify_cli(monkeypatch, settings)
    assert code == 0, out
    assert f"{RECORDS} records verified" in out


ALTERATIONS = [
    ("actor", "'mallory'"),
    ("action", "'user.delete'"),
    ("resource_type", "'dataset'"),
    ("resource_id", "'someone-else'"),
    ("outcome", "'denied'"),
    ("details", """'{"role": "admin"}'"""),
    ("ts_ms", "ts_ms + 1"),
    ("request_id", "'forged'"),
    ("prev_hash", "'" + "f" * 64 + "'"),
    ("hash", "'" + "e" * 64 + "'"),
]


def test_altered_field_is_reported(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for column, value in ALTERATIONS:
        with db.read() as session:
            original = session.execute(
                sa.text(f"SELECT {column} FROM gov_audit WHERE seq = 3")
            ).scalar()
        _exec(db, f"UPDATE gov_audit SET {column} = {value} WHERE seq = 3")
        result = audit.verify(db)
        assert not result.ok, column
        assert result.first_broken_seq == 3, (column, result)
        assert result.checked == 2
        assert "record 3" in result.reason
        if column == "actor":
            code, out = _verify_cli(monkeypatch, settings)
            assert code != 0
            assert "record 3" in out
        _exec(db, f"UPDATE gov_audit SET {column} = :v WHERE seq = 3", v=original)
        assert audit.verify(db).ok, f"restoring {column} restores the chain"


def test_altered_row_with_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    with db.write() as session:
        row = session.get(audit.AuditRow, 3)
        assert row is not None
        row.actor = "mallory"
        row.hash = audit._digest(row, db.keys.audit)  # a forger who even holds the key
    result = audit.verify(db)
    assert not result.ok
    # Record 3 is the one that changed: record 4 still commits to its original hash.
    assert (result.first_broken_seq, result.checked) == (3, 2), result
    assert "record 3 was replaced" in result.reason


def test_first_record_rewritten_with_recomputed_hash_is_reported(db: Database) -> None:
    with db.write() as session:
        row = session.get(audit.AuditRow, 1)
        assert row is not None
        row.actor = "mallory"
        row.hash = audit._digest(row, db.keys.audit)
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 1, 0), result


def test_rewired_record_is_reported_not_its_predecessor(db: Database) -> None:
    """A forger who rewrites record 4's link and hash breaks 3->4 *and* 4->5: 4 is named."""
    with db.write() as session:
        row = session.get(audit.AuditRow, 4)
        assert row is not None
        row.prev_hash = "a" * 64
        row.hash = audit._digest(row, db.keys.audit)
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 4, 3), result
    assert "record 4 does not link to record 3" in result.reason


def test_rewired_last_record_is_reported(db: Database) -> None:
    with db.write() as session:
        row = session.get(audit.AuditRow, RECORDS)
        assert row is not None
        row.prev_hash = "a" * 64
        row.hash = audit._digest(row, db.keys.audit)
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq) == (False, RECORDS), result


def test_rewritten_last_record_is_reported(db: Database) -> None:
    with db.write() as session:
        row = session.get(audit.AuditRow, RECORDS)
        assert row is not None
        row.outcome = "denied"
        row.hash = audit._digest(row, db.keys.audit)
    result = audit.verify(db)
    assert not result.ok
    assert result.first_broken_seq == RECORDS


def test_deleted_middle_record_is_reported(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exec(db, "DELETE FROM gov_audit WHERE seq = 3")
    result = audit.verify(db)
    assert not result.ok
    assert result.first_broken_seq == 3
    assert "missing" in result.reason
    code, out = _verify_cli(monkeypatch, settings)
    assert code != 0
    assert "record 3" in out


def test_deleted_first_record_is_reported(db: Database) -> None:
    _exec(db, "DELETE FROM gov_audit WHERE seq = 1")
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq) == (False, 1)


def test_deleted_last_record_is_reported(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exec(db, "DELETE FROM gov_audit WHERE seq = :s", s=RECORDS)
    result = audit.verify(db)
    assert not result.ok
    assert result.first_broken_seq == RECORDS
    assert result.checked == RECORDS - 1
    code, out = _verify_cli(monkeypatch, settings)
    assert code != 0
    assert f"record {RECORDS}" in out


def test_truncated_log_is_reported(db: Database) -> None:
    _exec(db, "DELETE FROM gov_audit")
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 1, 0)


def test_appended_row_outside_the_chain_is_reported(db: Database) -> None:
    with db.write() as session:
        last = session.get(audit.AuditRow, RECORDS)
        assert last is not None
        forged = audit.AuditRow(
            seq=RECORDS + 1,
            ts_ms=last.ts_ms + 1,
            actor="mallory",
            action="user.create",
            resource_type="user",
            resource_id="backdoor",
            request_id="",
            outcome="ok",
            details="{}",
            prev_hash=last.hash,
        )
        forged.hash = audit._digest(forged, db.keys.audit)
        session.add(forged)
    result = audit.verify(db)
    assert not result.ok
    assert result.first_broken_seq == RECORDS + 1
    assert "not part of the chain" in result.reason


def test_appends_continue_the_chain_after_verification(db: Database) -> None:
    gov = EmbeddedGovernance(Backends.around(db))
    gov.create_user("late", "editor")
    result = audit.verify(db, batch=2)  # several batches
    assert result.ok and result.checked == RECORDS + 1
    records = gov.list_audit(limit=10_000).items
    for prev, rec in itertools.pairwise(records):
        assert rec.prev_hash == prev.hash
    assert records[0].prev_hash == audit.GENESIS


def test_failed_call_is_audited_in_its_own_transaction(db: Database) -> None:
    gov = EmbeddedGovernance(Backends.around(db))
    with pytest.raises(Exception, match="already exists"):
        gov.create_user("user0", "admin")
    last = gov.list_audit(after_seq=RECORDS).items
    assert [(r.action, r.resource_id, r.outcome) for r in last] == [
        ("user.create", "user0", "error:RESOURCE_ALREADY_EXISTS")
    ]
    assert gov.get_user("user0").role.value == "viewer"
    assert audit.verify(db).ok


def test_audit_json_output_of_cli(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    _exec(db, "DELETE FROM gov_audit WHERE seq = 2")
    monkeypatch.setenv("STRATA_DB_URI", settings.db_uri)
    result = CliRunner().invoke(app, ["audit", "verify", "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["first_broken_seq"] == 2


# -- attacks by someone who can write the database but not read the key ---------------------


def _sha256_rechain(db: Database, start: int) -> None:
    """Edit record ``start`` and recompute every hash after it the way the old chain did
    (plain sha256), rolling the head forward: what passed `verify` before HMAC chaining."""
    import hashlib
    import json

    with db.write() as session:
        rows = session.scalars(sa.select(audit.AuditRow).order_by(audit.AuditRow.seq)).all()
        prev = rows[start - 2].hash if start > 1 else audit.GENESIS
        for row in rows[start - 1 :]:
            if row.seq == start:
                row.actor = "mallory"
            row.prev_hash = prev
            values = [
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
            ]
            body = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
            row.hash = prev = hashlib.sha256(body.encode()).hexdigest()
        head = session.get(audit.AuditHeadRow, 1)
        assert head is not None
        head.hash = prev


def test_recomputed_chain_without_the_key_is_reported(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sha256_rechain(db, 3)
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq) == (False, 3), result
    code, out = _verify_cli(monkeypatch, settings)
    assert code != 0 and "record 3" in out


def test_truncation_with_head_rolled_back_is_reported_against_the_checkpoint(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = EmbeddedGovernance(Backends.around(db)).checkpoint_audit()
    assert done is not None and done.seq == RECORDS
    _exec(db, "DELETE FROM gov_audit WHERE seq > 4")
    with db.read() as session:
        h4 = session.execute(sa.text("SELECT hash FROM gov_audit WHERE seq = 4")).scalar()
    _exec(db, "UPDATE gov_audit_head SET seq = 4, hash = :h WHERE id = 1", h=h4)
    result = audit.verify(db)
    assert (result.ok, result.first_broken_seq) == (False, 5), result
    assert f"records 5..{RECORDS} are missing" in result.reason
    code, out = _verify_cli(monkeypatch, settings)
    assert code != 0 and f"records 5..{RECORDS} are missing" in out


def test_checkpoints_are_written_automatically_and_forgeries_ignored(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(audit, "CHECKPOINT_EVERY", 2)
    gov = EmbeddedGovernance(Backends.around(db))
    gov.create_user("late", "viewer")  # record RECORDS + 1
    gov.create_token("late")  # record RECORDS + 2: a checkpoint
    store = db.audit_store
    assert store is not None
    seqs = sorted(
        json.loads(store.get_bytes(i.path))["seq"] for i in store.list("audit/checkpoints")
    )
    assert seqs == [RECORDS + 2]  # RECORDS + 1 is not a multiple of 2
    # A checkpoint forged without the key (claiming fewer records) is ignored.
    store.put_bytes(
        "audit/checkpoints/9999999999999999.json",
        json.dumps({"seq": 1, "hash": "0" * 64, "ts_ms": 0, "mac": "f" * 64}).encode(),
    )
    result = audit.verify(db)
    assert result.ok and "not signed" in result.reason
    _exec(db, f"DELETE FROM gov_audit WHERE seq > {RECORDS}")
    _exec(
        db,
        "UPDATE gov_audit_head SET seq = :s, hash = "
        "(SELECT hash FROM gov_audit WHERE seq = :s) WHERE id = 1",
        s=RECORDS,
    )
    assert not audit.verify(db).ok


@pytest.mark.parametrize("key_length", [1, 32, 63, 64, 65, 200])
def test_record_hash_is_the_standard_hmac_sha256(key_length: int) -> None:
    """The chain's HMAC comes from a cached keyed HMAC object: it must stay RFC 2104's
    HMAC-SHA256, or records written before (and any outside verifier) stop matching, and each
    record must hash a copy, leaving the cached object unconsumed. Keys of every length."""
    import hashlib
    import hmac

    key = bytes(range(256))[:key_length]
    values = (7, 1_700_000_000_000, "ada", "run.log_batch", "run", "r1", "", "ok", "{}", "0" * 64)
    body = audit._CANONICAL.encode(list(values)).encode()
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    assert audit._digest_values(values, key) == expected
    assert audit._digest_values(values, key) == expected  # the cached object is not consumed
    assert audit._digest_values(values, key[::-1] + b"x") != expected


def test_edited_lookup_keys_are_reported_and_rebuilt_from_the_cli(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`strata audit verify` names an edited lookup key and says how to repair it; `strata
    audit rebuild-keys` does, and verify then passes."""
    _exec(db, "INSERT INTO gov_audit_keys SELECT seq, ts_ms, actor, action FROM gov_audit")
    _exec(db, "UPDATE gov_audit_keys SET action = 'x' WHERE seq = 2")
    code, out = _verify_cli(monkeypatch, settings)
    assert code == 1 and "record 2" in out and "strata audit rebuild-keys" in out, out
    result = CliRunner().invoke(app, ["audit", "rebuild-keys"])
    assert result.exit_code == 0, result.output
    assert "Audit lookup keys rebuilt: none to copy yet" in result.output
    code, out = _verify_cli(monkeypatch, settings)
    assert code == 0 and f"{RECORDS + 1} records verified" in out, out


def test_rebuild_keys_from_the_cli_says_which_records_it_copied(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strata.governance import audit_keys

    monkeypatch.setattr(audit_keys, "KEYS_EVERY", 5)
    _verify_cli(monkeypatch, settings)  # points the CLI at this database
    result = CliRunner().invoke(app, ["audit", "rebuild-keys"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "records 1-5 copied again from the records (5 keys)" in said
    assert "until the next copy, every 5 records" in said
