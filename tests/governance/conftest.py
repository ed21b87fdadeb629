"""Governance fixtures: one migrated database per module and backend, emptied before each test.

Migrating a fresh PostgreSQL schema for every test costs most of these tests' time; the
governance tables are instead wiped between tests (the tests here only touch those).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import need_service
from pydantic import SecretStr

from strata.backends.artifacts import ArtifactStore
from strata.backends.db import Database
from strata.backends.keys import KeyRing
from strata.core.config import Settings
from strata.governance.tables import (
    AuditHeadRow,
    AuditKeyRow,
    AuditRow,
    ConnectionRow,
    TokenRow,
    UserRow,
)


def _postgres_base_url() -> str:
    return need_service("STRATA_TEST_POSTGRES_URL", "PostgreSQL")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated metadata database shared by one module's tests, per backend."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path_factory.mktemp('gov') / 'meta.db'}")
        db.upgrade()
        yield db
        db.dispose()
        return
    base = _postgres_base_url().replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at STRATA_TEST_POSTGRES_URL is unreachable: {exc.orig}")
    sep = "&" if "?" in base else "?"
    db = Database(f"{base}{sep}options=-csearch_path%3D{schema}")
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


#: The audit HMAC key of these tests (the CLI under test gets it as STRATA_AUDIT_KEY).
TEST_AUDIT_KEY = "11" * 32


@pytest.fixture
def gov_db(module_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    """The module's database with empty governance tables and a known audit key."""
    monkeypatch.setenv("STRATA_AUDIT_KEY", TEST_AUDIT_KEY)
    module_db.keys = KeyRing(tmp_path / "keys", SecretStr(TEST_AUDIT_KEY), None)
    module_db.audit_store = ArtifactStore(str(tmp_path / "artifacts"))
    with module_db.write() as session:
        for table in (AuditRow, AuditKeyRow, AuditHeadRow, TokenRow, UserRow, ConnectionRow):
            session.execute(sa.delete(table))
    return module_db


@pytest.fixture
def gov_settings(gov_db: Database, tmp_path: Path) -> Settings:
    """Settings pointing at ``gov_db`` (for the CLI, which reads STRATA_* variables)."""
    return Settings(
        home=tmp_path / "strata-home",
        db_uri=gov_db.uri,
        artifact_uri=str(tmp_path / "artifacts"),
    )
