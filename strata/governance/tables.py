"""SQLAlchemy tables of the governance layer."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from strata.backends.db import Base, UtcDateTime


class UserRow(Base):
    __tablename__ = "gov_users"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(64))


class TokenRow(Base):
    __tablename__ = "gov_tokens"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("gov_users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(128), default="")
    prefix: Mapped[str] = mapped_column(sa.String(16))
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    scope: Mapped[str | None] = mapped_column(sa.String(16))
    """None: the token acts with its user's role; ``"predict"``: a service token, which may
    only call models on inference servers (``Permission.PREDICT``)."""


class AuditRow(Base):
    __tablename__ = "gov_audit"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    # Not indexed here: their lookups go through AuditKeyRow (strata.governance.audit_keys).
    ts_ms: Mapped[int] = mapped_column(sa.BigInteger)
    actor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(64))
    resource_type: Mapped[str] = mapped_column(sa.String(64))
    resource_id: Mapped[str] = mapped_column(sa.String(256))
    request_id: Mapped[str] = mapped_column(sa.String(64))
    outcome: Mapped[str] = mapped_column(sa.String(64))
    details: Mapped[str] = mapped_column(sa.Text)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditKeyRow(Base):
    """A record's lookup keys, copied from ``gov_audit`` in batches and indexed here
    (:mod:`strata.governance.audit_keys`)."""

    __tablename__ = "gov_audit_keys"
    __table_args__ = (
        sa.Index("ix_gov_audit_keys_actor_seq", "actor", "seq"),
        sa.Index("ix_gov_audit_keys_action_seq", "action", "seq"),
        sa.Index("ix_gov_audit_keys_ts_ms", "ts_ms"),
    )

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(sa.BigInteger)
    actor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(64))


class ConnectionRow(Base):
    """A registered SQL connection; ``secret`` is the URL sealed with AES-256-GCM."""

    __tablename__ = "gov_connections"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    driver: Mapped[str] = mapped_column(sa.String(32))
    url_masked: Mapped[str] = mapped_column(sa.String(512))
    secret: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditHeadRow(Base):
    """The newest link of the chain, so deleting the last records is detected too."""

    __tablename__ = "gov_audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))
