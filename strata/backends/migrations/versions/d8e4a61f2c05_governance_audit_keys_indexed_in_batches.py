"""governance: the audit records' lookup keys indexed in batches (gov_audit_keys)

Revision ID: d8e4a61f2c05
Revises: c41d7e2a9b10
Create Date: 2026-12-03 10:05:00.000000

``gov_audit`` was indexed by ``actor``, ``action`` and ``ts_ms``: three more B-tree leaves
changed by every audited write (on SQLite three WAL pages of the ~10 a single ``log_metric``
writes). Those keys now live in ``gov_audit_keys``, indexed by ``(actor, seq)``,
``(action, seq)`` and ``ts_ms``, copied from the records every 256 records
(:mod:`strata.governance.audit_keys`). The upgrade copies every existing record's keys, then
drops the three indexes; the downgrade recreates them and drops the table. The records and
their hash chain are not touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "d8e4a61f2c05"
down_revision = "c41d7e2a9b10"
branch_labels = None
depends_on = None

_OLD_INDEXES = ("action", "actor", "ts_ms")


def upgrade() -> None:
    op.create_table(
        "gov_audit_keys",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_gov_audit_keys")),
    )
    op.execute(
        "INSERT INTO gov_audit_keys (seq, ts_ms, actor, action) "
        "SELECT seq, ts_ms, actor, action FROM gov_audit"
    )
    # After the copy: one sorted build per index rather than an insert per row.
    op.create_index("ix_gov_audit_keys_actor_seq", "gov_audit_keys", ["actor", "seq"])
    op.create_index("ix_gov_audit_keys_action_seq", "gov_audit_keys", ["action", "seq"])
    op.create_index("ix_gov_audit_keys_ts_ms", "gov_audit_keys", ["ts_ms"])
    for column in _OLD_INDEXES:
        op.drop_index(f"ix_gov_audit_{column}", table_name="gov_audit")


def downgrade() -> None:
    for column in _OLD_INDEXES:
        op.create_index(f"ix_gov_audit_{column}", "gov_audit", [column])
    op.drop_table("gov_audit_keys")
