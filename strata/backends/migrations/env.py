"""Alembic environment: runs on the connection handed over by ``Database.upgrade``."""

from __future__ import annotations

from alembic import context

from strata.backends.db import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` CLI use, which we do not ship
    raise RuntimeError("Run migrations through `strata db upgrade`.")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
