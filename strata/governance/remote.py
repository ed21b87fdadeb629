"""The governance interface over HTTP."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from strata.core.page import Page
from strata.core.principal import Role
from strata.core.transport import HttpTransport
from strata.governance.models import (
    AuditCheckpoint,
    AuditKeysRebuilt,
    AuditRecord,
    AuditVerification,
    Connection,
    NewToken,
    TokenInfo,
    User,
    WhoAmI,
)
from strata.governance.service import GovernanceService

P = "/api/v1"


class RemoteGovernance(GovernanceService):
    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def create_user(self, name: str, role: Role | str = Role.VIEWER) -> User:
        body = self.http.request("POST", f"{P}/users", json={"name": name, "role": str(role)})
        return User.model_validate(body)

    def get_user(self, name: str) -> User:
        return User.model_validate(self.http.request("GET", f"{P}/users/{name}"))

    def list_users(self) -> list[User]:
        return [User.model_validate(u) for u in self.http.request("GET", f"{P}/users")["users"]]

    def update_user(
        self, name: str, *, role: Role | str | None = None, disabled: bool | None = None
    ) -> User:
        body = {"role": None if role is None else str(role), "disabled": disabled}
        return User.model_validate(self.http.request("PATCH", f"{P}/users/{name}", json=body))

    def create_token(
        self,
        user: str,
        *,
        name: str = "",
        expires_in_days: float | None = None,
        scope: str | None = None,
    ) -> NewToken:
        body = {"user": user, "name": name, "expires_in_days": expires_in_days, "scope": scope}
        return NewToken.model_validate(self.http.request("POST", f"{P}/tokens", json=body))

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        body = self.http.request("GET", f"{P}/tokens", params={"user": user})
        return [TokenInfo.model_validate(t) for t in body["tokens"]]

    def revoke_token(self, token_id: str) -> TokenInfo:
        return TokenInfo.model_validate(self.http.request("DELETE", f"{P}/tokens/{token_id}"))

    def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        page_token: str | None = None,
        after_seq: int = 0,
    ) -> Page[AuditRecord]:
        params = {
            "actor": actor,
            "action": action,
            "resource_type": resource_type,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": limit,
            "page_token": page_token,
            "after_seq": after_seq,
        }
        body = self.http.request("GET", f"{P}/audit", params=params)
        records = [AuditRecord.model_validate(r) for r in body["records"]]
        return Page[AuditRecord](items=records, next_page_token=body.get("next_page_token"))

    def verify_audit(self) -> AuditVerification:
        return AuditVerification.model_validate(self.http.request("GET", f"{P}/audit/verify"))

    def checkpoint_audit(self) -> AuditCheckpoint | None:
        out = self.http.request("POST", f"{P}/audit/checkpoint")
        return None if out is None else AuditCheckpoint.model_validate(out)

    def rebuild_audit_keys(self) -> AuditKeysRebuilt:
        out = self.http.request("POST", f"{P}/audit/keys/rebuild")
        return AuditKeysRebuilt.model_validate(out)

    def create_connection(self, name: str, url: str) -> Connection:
        body = self.http.request("POST", f"{P}/connections", json={"name": name, "url": url})
        return Connection.model_validate(body)

    def list_connections(self) -> list[Connection]:
        body = self.http.request("GET", f"{P}/connections")
        return [Connection.model_validate(c) for c in body["connections"]]

    def delete_connection(self, name: str) -> None:
        self.http.request("DELETE", f"{P}/connections/{quote(name, safe='')}")

    def whoami(self) -> WhoAmI:
        return WhoAmI.model_validate(self.http.request("GET", f"{P}/whoami"))
