"""Tags of registered models and of their versions (a mixin of the embedded registry): set
(an upsert) and delete, each audited, a missing model, version or tag a NotFound."""

from __future__ import annotations

import sqlalchemy as sa

from strata.core.errors import NotFound
from strata.registry.models import check_tag, check_version
from strata.registry.parts import RegistryParts
from strata.registry.tables import RegModelTagRow, RegVersionTagRow


class TagsMixin(RegistryParts):
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
