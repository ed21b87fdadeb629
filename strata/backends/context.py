"""Wiring of the backends one Strata process uses (built once from Settings)."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from strata.backends.db import Database
from strata.core.config import Settings, load_settings

if TYPE_CHECKING:
    from strata.backends.artifacts import ArtifactStore


class Backends:
    """The metadata database and artifact store for one set of settings.

    Construction is cheap; the database is migrated on first use of :attr:`db`.
    """

    def __init__(self, settings: Settings | None = None, *, migrate: bool = True) -> None:
        self.settings = settings or load_settings()
        self._migrate = migrate
        self._lock = threading.Lock()

    @classmethod
    def around(cls, db: Database, settings: Settings | None = None) -> Backends:
        """Backends over a database that is already open (tools and tests); its audit store,
        when it has one, is the artifact store. Nothing is migrated."""
        out = cls(settings or Settings(db_uri=db.uri), migrate=False)
        out.__dict__["db"] = db
        if db.audit_store is not None:
            out.__dict__["artifacts"] = db.audit_store
        return out

    @cached_property
    def db(self) -> Database:
        from strata.backends.keys import KeyRing

        database = Database(self.settings.db_uri)
        database.keys = KeyRing.from_settings(self.settings)
        database.audit_store = self.artifacts
        if self._migrate:
            database.upgrade()
        return database

    @cached_property
    def artifacts(self) -> ArtifactStore:
        from strata.backends.artifacts import ArtifactStore

        return ArtifactStore(
            self.settings.artifact_uri, s3_endpoint_url=self.settings.s3_endpoint_url or None
        )

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
