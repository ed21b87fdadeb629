"""Developer tool: autogenerate an Alembic revision from every layer's tables.

Usage: .venv/bin/python scripts/make_migration.py "message"
It migrates a scratch SQLite database to head, then diffs it against the table definitions.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import tempfile

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import strata
from strata.backends.db import MIGRATIONS_DIR, Database


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "schema change"
    # Import every module of the package, so every table (wherever it is declared) is seen.
    for mod in pkgutil.walk_packages(strata.__path__, "strata."):
        if ".migrations" not in mod.name and not mod.name.endswith(".demo"):
            importlib.import_module(mod.name)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db")
        db.upgrade()
        engine = sa.create_engine(f"sqlite:///{tmp}/scratch.db")
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)


if __name__ == "__main__":
    main()
