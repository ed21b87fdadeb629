"""Issue 7: rotating the audit key keeps `verify` working across the rotation, and logs
written before HMAC chaining are reported as a legacy segment (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.backends.keys import KeyRing, audit_key_id
from strata.cli.main import app
from strata.governance import audit
from strata.governance.embedded import EmbeddedGovernance
from strata.governance.tables import AuditRow


@pytest.fixture
def db(gov_db: Database, tmp_path: Path) -> Database:
    gov_db.keys = KeyRing(tmp_path / "home", None, None)  # key files, as a server keeps them
    return gov_db


def _users(db: Database, prefix: str, n: int) -> None:
    gov = EmbeddedGovernance(Backends.around(db))
    for i in range(n):
        gov.create_user(f"{prefix}{i}", "viewer")


def _rewrite(db: Database, seq: int, key: bytes | None) -> None:
    """What an attacker holding ``key`` (None: no key) does: change a record, recompute it."""
    with db.write() as session:
        row = session.get(AuditRow, seq)
        assert row is not None
        row.actor = "mallory"
        row.hash = audit._digest(row, key)
        nxt = session.get(AuditRow, seq + 1)
        if nxt is not None:
            nxt.prev_hash = row.hash
            nxt.hash = audit._digest(nxt, key)


def test_verify_works_across_rotations_and_an_old_key_cannot_sign_after(
    db: Database, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _users(db, "before", 3)
    first = db.keys.audit
    done = audit.rotate_key(db)
    assert done["previous_key_id"] == audit_key_id(first) != done["key_id"]
    assert db.keys.audit != first
    assert (home / "audit.key").read_text().strip() == db.keys.audit.hex()
    retired = home / "audit-keys" / f"{audit_key_id(first)}.key"
    assert stat.S_IMODE(os.stat(retired).st_mode) == 0o600
    _users(db, "between", 2)
    audit.rotate_key(db)  # a second rotation: two retired keys
    _users(db, "after", 2)
    result = audit.verify(db)
    assert (result.ok, result.checked, result.legacy_until) == (True, 3 + 1 + 2 + 1 + 2, 0)
    rotations = [r for r in audit.list_records(db, limit=100) if r.action == audit.ROTATE_ACTION]
    assert len(rotations) == 2 and rotations[0].details["key_id"] == done["key_id"]
    # another process (a fresh key ring on the same home) verifies the same
    db.keys = KeyRing(home, None, None)
    assert audit.verify(db).ok
    # without the retired keys the older segments cannot be verified
    aside = tmp_path / "aside"
    (home / "audit-keys").rename(aside)
    db.keys = KeyRing(home, None, None)
    assert not audit.verify(db).ok
    aside.rename(home / "audit-keys")
    db.keys = KeyRing(home, None, None)
    assert audit.verify(db).ok
    # whoever leaked the first key cannot rewrite a record written after the rotation
    _rewrite(db, 6, first)
    bad = audit.verify(db)
    assert not bad.ok and bad.first_broken_seq == 6, bad


def test_rotate_key_from_the_cli(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _users(db, "u", 2)
    monkeypatch.delenv("STRATA_AUDIT_KEY", raising=False)
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STRATA_DB_URI", db.uri)
    monkeypatch.setenv("STRATA_ARTIFACT_URI", str(tmp_path / "artifacts"))
    result = CliRunner().invoke(app, ["audit", "rotate-key"])
    assert result.exit_code == 0, result.output
    assert "Audit key rotated at record 3" in result.output
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "3 records verified" in result.output


def test_a_key_from_the_environment_is_not_rotated_in_place(
    gov_db: Database, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from strata.core.errors import Unavailable

    gov_db.keys = KeyRing(tmp_path / "h", SecretStr("a passphrase"), None)
    _users(gov_db, "u", 1)
    with pytest.raises(Unavailable, match="STRATA_AUDIT_KEY"):
        audit.rotate_key(gov_db)
    assert audit.verify(gov_db).ok  # the hand-over record was rolled back with the error
    assert audit.verify(gov_db).checked == 1


def test_a_pre_hmac_segment_is_reported_apart_and_cannot_follow_keyed_records(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = audit._digest_values
    with monkeypatch.context() as m:  # how records were chained before HMAC
        m.setattr(audit, "_digest_values", lambda values, key: original(values, None))
        _users(db, "old", 3)
    _users(db, "new", 2)
    result = audit.verify(db)
    assert (result.ok, result.checked, result.legacy_until) == (True, 5, 3)
    assert "records 1..3 predate HMAC chaining" in result.reason
    # Rewriting keyed records as plain SHA-256 (head included) would only move the legacy
    # boundary, and verify would say so; a signed checkpoint pins it: the rewrite is found.
    assert audit.write_checkpoint(db) is not None
    _rewrite(db, 4, None)
    with db.write() as session:
        last = session.get(AuditRow, 5)
        assert last is not None
        session.execute(sa.text("UPDATE gov_audit_head SET hash = :h"), {"h": last.hash})
    bad = audit.verify(db)
    assert not bad.ok and bad.first_broken_seq == 5 and "checkpoint" in bad.reason, bad
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditRow)) == 5
