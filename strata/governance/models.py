"""Governance domain objects: users, API tokens, audit records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from strata.core.principal import Role


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    created_by: str


class TokenInfo(BaseModel):
    """An API token without its secret (the secret is shown once, at creation)."""

    model_config = ConfigDict(frozen=True)

    id: str
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    scope: str | None = None
    """``predict``: a service token (it may only predict); None: its user's role."""

    @property
    def active(self) -> bool:
        from strata.core.clock import utcnow

        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utcnow())


class NewToken(BaseModel):
    """A freshly created token: ``secret`` is never stored nor shown again."""

    info: TokenInfo
    secret: str


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    ts: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    request_id: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class Connection(BaseModel):
    """A registered SQL connection as shown to admins: the URL with its password masked."""

    name: str
    driver: str
    url: str
    created_by: str
    created_at: datetime


class AuditVerification(BaseModel):
    """The result of walking the audit hash chain."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""
    #: Records 1..legacy_until were chained with plain SHA-256 (before HMAC): reported
    #: apart, since whoever could write the database could have rewritten them (0: none).
    legacy_until: int = 0


class AuditKeysRebuilt(BaseModel):
    """What ``rebuild_audit_keys`` did: the records whose lookup keys it copied again (every
    record through ``copied_through_seq``, the last multiple of the copy interval; the newer
    ones are copied with the next)."""

    keys_copied: int
    copied_through_seq: int


class AuditCheckpoint(BaseModel):
    """A signed chain head stored in the artifact store (``audit/checkpoints/``).

    The fields are the signed document's: ``ts_ms`` is epoch milliseconds because the MAC
    covers that exact integer.
    """

    seq: int
    hash: str
    ts_ms: int
    mac: str
    path: str


class WhoAmI(BaseModel):
    name: str
    role: Role
    user_id: str | None
