"""Tags of registered models and of their versions (a mixin of the embedded registry): set
(an upsert) and delete, each audited, a missing model, version or tag a NotFound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.core.errors import NotFound
from strata.registry.models import check_tag, check_version
from strata.registry.tables import RegModelRow, RegModelTagRow, RegVersionRow, RegVersionTagRow

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from strata.governance.audit import AuditScope


class TagsMixin:
    if TYPE_CHECKING:  # what the embedded registry provides

        @property
        def db(self) -> Any: ...

        def _write(
            self, action: str, resource_type: str, resource_id: str, **details: Any
        ) -> AbstractContextManager[AuditScope]: ...

        def _model_row(self, s: Session, name: str, *, lock: bool = False) -> RegModelRow: ...

        def _version_row(self, s: Session, name: str, version: int) -> RegVersionRow: ...

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        key, value = check_tag(key, value)
        with self._write("registry.set_model_tag", "registered_model", name, key=key) as scope:
            self._model_row(scope.session, name)
            self.db.upsert(
                scope.session,
                RegModelTagRow.__table__,
                [{"name": name, "key": key, "value": value}],
                keys=["name", "key"],
                update=["value"],
            )

    def delete_model_tag(self, name: str, key: str) -> None:
        with self._write("registry.delete_model_tag", "registered_model", name, key=key) as scope:
            self._model_row(scope.session, name)
            done = scope.session.execute(
                sa.delete(RegModelTagRow).where(
                    RegModelTagRow.name == name, RegModelTagRow.key == key
                )
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                raise NotFound(
                    f"Model {name!r} has no tag {key!r}", details={"name": name, "key": key}
                )

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        number = check_version(version)
        key, value = check_tag(key, value)
        with self._write(
            "registry.set_version_tag", "model_version", f"{name}/{number}", key=key
        ) as scope:
            self._version_row(scope.session, name, number)
            self.db.upsert(
                scope.session,
                RegVersionTagRow.__table__,
                [{"name": name, "version": number, "key": key, "value": value}],
                keys=["name", "version", "key"],
                update=["value"],
            )

    def delete_version_tag(self, name: str, version: int | str, key: str) -> None:
        number = check_version(version)
        with self._write(
            "registry.delete_version_tag", "model_version", f"{name}/{number}", key=key
        ) as scope:
            self._version_row(scope.session, name, number)
            t = RegVersionTagRow
            done = scope.session.execute(
                sa.delete(t).where(t.name == name, t.version == number, t.key == key)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                raise NotFound(
                    f"Version {number} of {name!r} has no tag {key!r}",
                    details={"name": name, "version": number, "key": key},
                )
