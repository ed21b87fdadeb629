"""tracking: params, tags and latest metrics as WITHOUT ROWID tables on SQLite

Revision ID: c41d7e2a9b10
Revises: 75b4353681e8
Create Date: 2026-12-01 19:30:00.000000

On SQLite a table with a composite primary key keeps its rows in a rowid B-tree and the key
in a second one (``sqlite_autoindex_*``): reading a run's params, tags or latest metrics
walks the key's index, then looks each row up by rowid. As ``WITHOUT ROWID`` tables the rows
live in the key's own B-tree, ordered by ``(run_id, key)``: one lookup per row, and the
``(key, value)`` indexes carry ``run_id`` itself (a search's ``IN`` subquery no longer reads
the table). In-process, the MLflow search of 343 of 2,000 runs read them 13-18% faster.

SQLite cannot change this in place: each table is rebuilt (created anew from its own stored
definition with ``WITHOUT ROWID``, rows copied, the old one dropped, the new one renamed, its
indexes recreated), in the migration's transaction. PostgreSQL has no rowid: nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "c41d7e2a9b10"
down_revision = "75b4353681e8"
branch_labels = None
depends_on = None

TABLES = ("trk_params", "trk_tags", "trk_latest_metrics")
_SUFFIX = " WITHOUT ROWID"


def _rebuild(table: str, *, rowid: bool) -> None:
    conn = op.get_bind()
    create = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar_one()
    indexes = (
        conn.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                "AND sql IS NOT NULL"
            ),
            {"t": table},
        )
        .scalars()
        .all()
    )
    body = create.rstrip()
    has_suffix = body.upper().endswith(_SUFFIX)
    if has_suffix != rowid:  # already as wanted (e.g. made fresh by a newer tool)
        return
    body = body[: -len(_SUFFIX)] if rowid else body + _SUFFIX
    definition = body[body.index("(") :]  # after the name, which a rename leaves quoted
    columns = ", ".join(
        f'"{c["name"]}"' for c in conn.execute(sa.text(f"PRAGMA table_info({table})")).mappings()
    )
    new = f"{table}__rebuild"
    conn.exec_driver_sql(f"CREATE TABLE {new} {definition}")
    conn.exec_driver_sql(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {table}")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"ALTER TABLE {new} RENAME TO {table}")
    for index in indexes:
        conn.exec_driver_sql(index)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, rowid=True)
