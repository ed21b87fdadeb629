"""Promotion requests, approvals and the registry's settings (a mixin of the embedded
registry).

A protected alias moves only here: :meth:`approve` checks the approver's permission, the
self-approval rule and the recorded gate, then moves the alias and closes the request in one
audited transaction — the history entry names the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from strata.core.clock import utcnow
from strata.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from strata.core.ids import new_id
from strata.core.page import Page, encode_page_token
from strata.core.parse import parse_enum, parse_options
from strata.core.principal import Permission, current
from strata.registry.models import (
    Gate,
    GateResult,
    PromotionRequest,
    RegistrySettings,
    RequestStatus,
    VersionStatus,
    check_alias,
    check_text,
    check_version,
)
from strata.registry.tables import RegRequestRow, RegSettingRow

if TYPE_CHECKING:
    from strata.registry.embedded import EmbeddedRegistry

SETTINGS_KEY = "settings"


def _request(row: RegRequestRow) -> PromotionRequest:
    return PromotionRequest(
        id=row.id,
        name=row.name,
        version=row.version,
        alias=row.alias,
        reason=row.reason,
        status=RequestStatus(row.status),
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        comment=row.comment,
        gate=GateResult.model_validate_json(row.gate) if row.gate else None,
    )


class ApprovalsMixin:
    def _self(self) -> EmbeddedRegistry:
        return self  # type: ignore[return-value]

    def _run_gate(self, gate: Gate, name: str, candidate: int) -> GateResult:
        from strata.registry.gates import run_gate

        reg = self._self()
        try:
            holder = reg.get_version_by_alias(name, "production").version
        except NotFound:
            holder = None
        return run_gate(reg, gate, name, candidate, holder)

    def request_promotion(
        self, name: str, version: int | str, *, alias: str = "production", reason: str
    ) -> PromotionRequest:
        reg = self._self()
        number = check_version(version)
        check_alias(alias)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput(
                "A promotion request needs a reason (--reason TEXT)", details={"field": "reason"}
            )
        check_text(reason, "reason")
        mv = reg.get_version(name, number)
        if mv.status != VersionStatus.READY:
            raise Conflict(
                f"Version {number} of {name!r} is {mv.status.value}, not ready: it cannot be "
                "promoted",
                details={"name": name, "version": number, "status": mv.status.value},
            )
        gate = reg.get_model(name).gate
        result = self._run_gate(gate, name, number) if gate is not None else None
        with reg._write(
            "registry.request_promotion", "promotion_request", "", name=name, version=number
        ) as scope:
            row = RegRequestRow(
                id=new_id(),
                name=name,
                version=number,
                alias=alias,
                reason=reason.strip(),
                status=RequestStatus.PENDING.value,
                requested_by=current().principal.name,
                requested_at=utcnow(),
                comment="",
                gate=result.model_dump_json() if result else None,
            )
            scope.session.add(row)
            scope.session.flush()
            scope.resource_id = row.id
            scope.details.update(alias=alias, gate_passed=None if result is None else result.passed)
            return _request(row)

    def _pending(self, s: Any, request_id: str) -> RegRequestRow:
        row: RegRequestRow | None = (
            s.get(RegRequestRow, request_id) if isinstance(request_id, str) else None
        )
        if row is None:
            raise NotFound(
                f"Promotion request {request_id!r} not found", details={"request_id": request_id}
            )
        if row.status != RequestStatus.PENDING.value:
            raise Conflict(
                f"Promotion request {request_id} is already {row.status} (by {row.decided_by})",
                details={"request_id": request_id, "status": row.status},
            )
        return row

    def get_request(self, request_id: str) -> PromotionRequest:
        with self._self().db.read() as s:
            row = s.get(RegRequestRow, request_id) if isinstance(request_id, str) else None
            if row is None:
                raise NotFound(
                    f"Promotion request {request_id!r} not found",
                    details={"request_id": request_id},
                )
            return _request(row)

    def list_requests(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[PromotionRequest]:
        from strata.registry.access import page_size as _limit
        from strata.registry.access import page_value

        limit = _limit(max_results)
        offset = page_value(page_token, "offset")
        stmt = sa.select(RegRequestRow)
        if name is not None:
            stmt = stmt.where(RegRequestRow.name == name)
        if status is not None:
            stmt = stmt.where(
                RegRequestRow.status == parse_enum(RequestStatus, status, "status").value
            )
        stmt = stmt.order_by(RegRequestRow.id.desc()).offset(offset).limit(limit + 1)
        with self._self().db.read() as s:
            rows = list(s.scalars(stmt))
        token = encode_page_token("offset", offset + limit) if len(rows) > limit else None
        return Page(items=[_request(r) for r in rows[:limit]], next_page_token=token)

    def _decide(self, request_id: str, comment: str, approve: bool) -> PromotionRequest:
        from strata.registry.access import need

        reg = self._self()
        verb = "approve" if approve else "reject"
        need(Permission.APPROVE, f"{verb} promotion requests")
        check_text(comment, "comment")
        principal = current().principal
        allow_self = self.get_settings().allow_self_approval
        with reg._write(f"registry.{verb}", "promotion_request", str(request_id)) as scope:
            s = scope.session
            row = self._pending(s, request_id)
            if approve and row.requested_by == principal.name and not allow_self:
                raise PermissionDenied(
                    f"{principal.name!r} requested promotion {row.id} and may not approve it "
                    "too: another approver must (an admin can allow self-approval with "
                    "`strata models settings --allow-self-approval`)",
                    details={"request_id": row.id, "requested_by": row.requested_by},
                )
            gate = GateResult.model_validate_json(row.gate) if row.gate else None
            if approve and gate is not None and not gate.passed:
                raise Conflict(
                    f"Promotion {row.id} failed its gate: {gate.message}",
                    details={"request_id": row.id, "gate": gate.model_dump(mode="json")},
                )
            row.status = (RequestStatus.APPROVED if approve else RequestStatus.REJECTED).value
            row.decided_by = principal.name
            row.decided_at = utcnow()
            row.comment = comment
            scope.details.update(name=row.name, version=row.version, alias=row.alias)
            if approve:
                reg._move_alias(
                    s,
                    row.name,
                    row.alias,
                    row.version,
                    action="promote",
                    reason=row.reason,
                    request_id=row.id,
                )
            s.flush()
            return _request(row)

    def approve(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return self._decide(request_id, comment, True)

    def reject(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return self._decide(request_id, comment, False)

    def get_settings(self) -> RegistrySettings:
        with self._self().db.read() as s:
            row = s.get(RegSettingRow, SETTINGS_KEY)
            return RegistrySettings.model_validate_json(row.value) if row else RegistrySettings()

    def update_settings(self, settings: RegistrySettings | dict[str, Any]) -> RegistrySettings:
        from strata.registry.access import need

        need(Permission.ADMIN, "change the registry settings")
        parsed = (
            settings
            if isinstance(settings, RegistrySettings)
            else parse_options(RegistrySettings, None, **dict(settings))
        )
        reg = self._self()
        with reg._write(
            "registry.update_settings", "registry_settings", SETTINGS_KEY, **parsed.model_dump()
        ) as scope:
            reg.db.upsert(
                scope.session,
                RegSettingRow.__table__,
                [{"key": SETTINGS_KEY, "value": parsed.model_dump_json()}],
                keys=["key"],
                update=["value"],
            )
        return parsed
