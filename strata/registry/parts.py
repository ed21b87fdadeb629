"""What the embedded registry gives the mixins its parts are written in (:mod:`.aliases`,
:mod:`.tags`): its database, its audited write scope and its row lookups, declared for type
checkers only (the embedded registry defines them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from strata.governance.audit import AuditScope
    from strata.registry.tables import RegModelRow, RegVersionRow


class RegistryParts:
    if TYPE_CHECKING:  # what the embedded registry provides

        @property
        def db(self) -> Any: ...

        def _write(
            self, action: str, resource_type: str, resource_id: str, **details: Any
        ) -> AbstractContextManager[AuditScope]: ...

        def _model_row(self, s: Session, name: str, *, lock: bool = False) -> RegModelRow: ...

        def _version_row(self, s: Session, name: str, version: int) -> RegVersionRow: ...
