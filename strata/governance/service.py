"""Governance: users, roles, API tokens and the audit log — the interface.

``embedded.py`` implements it on the metadata database, ``remote.py`` over HTTP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from strata.core.page import Page
from strata.core.principal import Role
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


class GovernanceService(ABC):
    """Users, tokens and audit; the same interface embedded and remote."""

    @abstractmethod
    def create_user(self, name: str, role: Role | str = Role.VIEWER) -> User: ...
    @abstractmethod
    def get_user(self, name: str) -> User: ...
    @abstractmethod
    def list_users(self) -> list[User]: ...
    @abstractmethod
    def update_user(
        self, name: str, *, role: Role | str | None = None, disabled: bool | None = None
    ) -> User: ...
    def disable_user(self, name: str) -> User:
        """Disable a user: its tokens stop working at once. Reversible with ``update_user``."""
        return self.update_user(name, disabled=True)

    @abstractmethod
    def create_token(
        self,
        user: str,
        *,
        name: str = "",
        expires_in_days: float | None = None,
        scope: str | None = None,
    ) -> NewToken:
        """Create an API token; the secret is in the result only, never stored. ``scope``
        ``"predict"``: a service token, which may only call models on inference servers,
        whatever its user's role (for an application that calls ``strata serve``)."""

    @abstractmethod
    def list_tokens(self, user: str | None = None) -> list[TokenInfo]: ...
    @abstractmethod
    def revoke_token(self, token_id: str) -> TokenInfo: ...
    @abstractmethod
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
        """Audit records in ascending sequence order, at most ``limit`` (1 to 10,000) per
        page; pass ``next_page_token`` back as ``page_token`` for the next page. ``action``
        may end in ``*``; ``since``/``until`` bound the record time (inclusive,
        timezone-aware). ``after_seq`` (records after that sequence number) is the older
        spelling of a page token and is still honoured."""

    @abstractmethod
    def verify_audit(self) -> AuditVerification: ...
    @abstractmethod
    def whoami(self) -> WhoAmI: ...
    @abstractmethod
    def checkpoint_audit(self) -> AuditCheckpoint | None:
        """Sign the audit chain's head into the artifact store (admin); None when empty."""

    @abstractmethod
    def rebuild_audit_keys(self) -> AuditKeysRebuilt:
        """Copy the audit records' lookup keys again from the records (admin): the repair
        for a keys table that ``verify_audit`` reports edited (the records are not touched)."""

    @abstractmethod
    def create_connection(self, name: str, url: str) -> Connection:
        """Register a SQL connection (admin); the URL is stored encrypted, never returned."""

    @abstractmethod
    def list_connections(self) -> list[Connection]:
        """Registered connections, by name, URLs masked (admin)."""

    @abstractmethod
    def delete_connection(self, name: str) -> None:
        """Remove a connection (admin); NotFound if absent."""
