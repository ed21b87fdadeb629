"""Alembic environment: runs on the connection handed over by ``Database.upgrade``."""

from __future__ import annotations

from typing import Any

from alembic import context

from strata.backends.db import Base, UtcDateTime

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` CLI use, which we do not ship
    raise RuntimeError("Run migrations through `strata db upgrade`.")


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our column types as plain SQLAlchemy types, so migrations import nothing of ours
    (UtcDateTime is DateTime(timezone=True) in the database; the conversion is Python-side)."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
