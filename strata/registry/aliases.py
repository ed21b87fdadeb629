"""Aliases and their history (a mixin of the embedded registry): every move, removal and
rollback is a row of the alias history (who, when, from, to, why), written in the same
audited transaction as the move, with the model's row locked first so moves of one model
serialize. MLflow's legacy stages map onto aliases here too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.core.clock import utcnow
from strata.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from strata.core.page import Page, encode_page_token
from strata.core.principal import Permission, current
from strata.registry.access import need, page_size, page_value
from strata.registry.models import (
    PROTECTED_ALIASES,
    AliasMove,
    ModelVersion,
    VersionStatus,
    check_alias,
    check_text,
    check_version,
)
from strata.registry.parts import RegistryParts
from strata.registry.tables import RegAliasHistoryRow, RegAliasRow, RegVersionRow


class AliasesMixin(RegistryParts):
    if TYPE_CHECKING:  # what the embedded registry provides

        def get_version(self, name: str, version: int | str) -> ModelVersion: ...

    def _record(
        self,
        s: Session,
        name: str,
        alias: str,
        before: int | None,
        after: int | None,
        action: str,
        reason: str,
        request_id: str | None,
    ) -> RegAliasHistoryRow:
        row = RegAliasHistoryRow(
            name=name,
            alias=alias,
            from_version=before,
            to_version=after,
            action=action,
            actor=current().principal.name,
            reason=reason,
            request_id=request_id,
            at=utcnow(),
        )
        s.add(row)
        s.flush()
        return row

    @staticmethod
    def _move(row: RegAliasHistoryRow) -> AliasMove:
        return AliasMove(
            seq=row.seq,
            name=row.name,
            alias=row.alias,
            from_version=row.from_version,
            to_version=row.to_version,
            action=row.action,
            actor=row.actor,
            reason=row.reason,
            request_id=row.request_id,
            at=row.at,
        )

    def _move_alias(
        self,
        s: Session,
        name: str,
        alias: str,
        number: int | None,
        *,
        action: str,
        reason: str,
        request_id: str | None = None,
    ) -> AliasMove:
        """Move (or with None remove) an alias inside the caller's write transaction, the
        model's row locked first so moves of one model serialize."""
        model = self._model_row(s, name, lock=True)
        if number is not None:
            target = self._version_row(s, name, number)
            if target.status != VersionStatus.READY.value:
                raise Conflict(
                    f"Version {number} of {name!r} is {target.status}, not ready: an alias "
                    "can only point at a ready version"
                    + (f" ({target.status_message})" if target.status_message else ""),
                    details={"name": name, "version": number, "status": target.status},
                )
        current_row = s.get(RegAliasRow, (name, alias))
        before = current_row.version if current_row is not None else None
        if number is None:
            if current_row is None:
                raise NotFound(
                    f"Model {name!r} has no alias {alias!r}", details={"name": name, "alias": alias}
                )
            s.delete(current_row)
        elif current_row is None:
            s.add(RegAliasRow(name=name, alias=alias, version=number))
        else:
            current_row.version = number
        model.updated_at = utcnow()
        return self._move(self._record(s, name, alias, before, number, action, reason, request_id))

    def set_alias(
        self, name: str, alias: str, version: int | str, *, reason: str = ""
    ) -> AliasMove:
        check_alias(alias)
        number = check_version(version)
        check_text(reason, "reason")
        if alias in PROTECTED_ALIASES:
            raise PermissionDenied(
                f"The alias {alias!r} moves only through an approved promotion request: "
                f"`strata models request-promotion {name} {number} --alias {alias} --reason ...`",
                details={"alias": alias, "name": name},
            )
        with self._write(
            "registry.set_alias", "model_alias", f"{name}@{alias}", version=number, reason=reason
        ) as scope:
            return self._move_alias(scope.session, name, alias, number, action="set", reason=reason)

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        check_alias(alias)
        check_text(reason, "reason")
        if alias in PROTECTED_ALIASES:
            need(Permission.APPROVE, f"remove the protected alias {alias!r}")
        with self._write(
            "registry.delete_alias", "model_alias", f"{name}@{alias}", reason=reason
        ) as scope:
            return self._move_alias(
                scope.session, name, alias, None, action="delete", reason=reason
            )

    def alias_history(
        self,
        name: str,
        alias: str | None = None,
        *,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[AliasMove]:
        limit = page_size(max_results)
        after = page_value(page_token, "before_seq") if page_token else None
        h = RegAliasHistoryRow
        stmt = sa.select(h).where(h.name == name)
        if alias is not None:
            stmt = stmt.where(h.alias == alias)
        if after is not None:
            stmt = stmt.where(h.seq < after)
        stmt = stmt.order_by(h.seq.desc()).limit(limit + 1)
        with self.db.read() as s:
            self._model_row(s, name)
            rows = list(s.scalars(stmt))
        items = [self._move(r) for r in rows[:limit]]
        token = encode_page_token("before_seq", rows[limit - 1].seq) if len(rows) > limit else None
        return Page(items=items, next_page_token=token)

    def rollback(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        check_alias(alias)
        check_text(reason, "reason")
        if alias in PROTECTED_ALIASES:
            need(Permission.APPROVE, f"roll back the protected alias {alias!r}")
        with self._write("registry.rollback", "model_alias", f"{name}@{alias}") as scope:
            s = scope.session
            self._model_row(s, name, lock=True)
            h = RegAliasHistoryRow
            last = s.scalars(
                sa.select(h).where(h.name == name, h.alias == alias).order_by(h.seq.desc()).limit(1)
            ).first()
            if last is None or last.from_version is None:
                raise Conflict(
                    f"Alias {alias!r} of {name!r} has no earlier version to roll back to",
                    details={"name": name, "alias": alias},
                )
            if s.get(RegVersionRow, (name, last.from_version)) is None:
                raise Conflict(
                    f"Alias {alias!r} of {name!r} pointed at version {last.from_version} before, "
                    "but that version was deleted",
                    details={"name": name, "alias": alias, "version": last.from_version},
                )
            scope.details.update(
                from_version=last.to_version, to_version=last.from_version, reason=reason
            )
            return self._move_alias(
                s,
                name,
                alias,
                last.from_version,
                action="rollback",
                reason=reason or f"rollback of move #{last.seq}",
            )

    # -- MLflow legacy stages ------------------------------------------------------------
    def transition_stage(
        self, name: str, version: int | str, stage: str, *, archive_existing: bool = False
    ) -> ModelVersion:
        from strata.registry.models import STAGE_ALIASES

        number = check_version(version)
        key = str(stage).strip().lower()
        if key in STAGE_ALIASES:
            alias = STAGE_ALIASES[key]
            self.set_alias(name, alias, number, reason=f"stage transition to {stage}")
        elif key in ("archived", "none"):
            mv = self.get_version(name, number)
            for alias in sorted(set(mv.aliases) & set(STAGE_ALIASES.values())):
                self.delete_alias(name, alias, reason=f"stage transition to {stage}")
        else:
            raise InvalidInput(
                f"Unknown stage {stage!r}; expected None, Staging, Production or Archived",
                details={"field": "stage"},
            )
        return self.get_version(name, number)
