"""governance: token scopes (service tokens that may only predict)

Revision ID: e7b3c9d1a4f2
Revises: d8e4a61f2c05
Create Date: 2026-12-03 17:00:00.000000

``gov_tokens.scope``: NULL for the tokens there are (they act with their user's role, as
before); ``predict`` for a service token, which may only call models on inference servers. The
downgrade revokes the service tokens (without the column they would act with their user's
whole role).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e7b3c9d1a4f2"
down_revision = "d8e4a61f2c05"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gov_tokens") as batch:
        batch.add_column(sa.Column("scope", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # Without the column a service token would act with its user's whole role: revoke them.
    op.execute(
        sa.text(
            "UPDATE gov_tokens SET revoked_at = CURRENT_TIMESTAMP "
            "WHERE scope IS NOT NULL AND revoked_at IS NULL"
        )
    )
    with op.batch_alter_table("gov_tokens") as batch:
        batch.drop_column("scope")
