"""Governance on the metadata database: users, roles, API tokens and the audit log (and the
artifact store, for audit checkpoints). The interface is ``service.GovernanceService``."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from strata.backends.context import Backends
from strata.backends.db import Database
from strata.core.clock import utcnow
from strata.core.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated
from strata.core.ids import new_id
from strata.core.page import Page, decode_page_token, encode_page_token
from strata.core.parse import parse_enum
from strata.core.principal import TOKEN_SCOPES, Principal, Role, current
from strata.governance import audit, connections
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
from strata.governance.tables import TokenRow, UserRow

USER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "strata_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
MIN_TOKEN_DAYS = 0.001
MAX_TOKEN_DAYS = 36500.0


_AUTH_QUERY = (
    sa.select(
        TokenRow.id,
        TokenRow.expires_at,
        TokenRow.revoked_at,
        TokenRow.last_used_at,
        UserRow.id,
        UserRow.name,
        UserRow.role,
        UserRow.disabled,
        TokenRow.scope,
    )
    .join(UserRow, TokenRow.user_id == UserRow.id)
    .where(TokenRow.digest == sa.bindparam("digest"))
)


def token_digest(secret: str) -> str:
    """The stored form of a token: its SHA-256 (tokens carry 256 random bits, so no salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_role(value: str) -> Role:
    return parse_enum(Role, value, "role")


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        disabled=row.disabled,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _token(row: TokenRow, user: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=user,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        scope=row.scope,
    )


class EmbeddedGovernance(GovernanceService):
    """Governance on the metadata database (and the artifact store, for audit checkpoints)."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    @property
    def db(self) -> Database:
        return self.backends.db

    def _user_row(self, session: sa.orm.Session, name: str) -> UserRow:
        row = session.scalar(sa.select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NotFound(f"User {name!r} does not exist", details={"user": name})
        return row

    def create_user(self, name: str, role: Role | str = Role.VIEWER) -> User:
        if not USER_NAME_RE.match(name or ""):
            raise InvalidInput(
                f"Invalid user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-',"
                " starting with a letter or digit",
                details={"field": "name"},
            )
        role = parse_role(str(role))
        try:
            with audit.audited(self.db, "user.create", "user", name, {"role": role.value}) as sc:
                if sc.session.scalar(sa.select(UserRow.id).where(UserRow.name == name)):
                    raise AlreadyExists(f"User {name!r} already exists", details={"user": name})
                row = UserRow(
                    id=new_id(),
                    name=name,
                    role=role.value,
                    disabled=False,
                    created_at=utcnow(),
                    created_by=current().principal.name,
                )
                sc.session.add(row)
                sc.session.flush()
                return _user(row)
        except IntegrityError as exc:
            raise AlreadyExists(f"User {name!r} already exists", details={"user": name}) from exc

    def get_user(self, name: str) -> User:
        with self.db.read() as session:
            return _user(self._user_row(session, name))

    def list_users(self) -> list[User]:
        with self.db.read() as session:
            return [_user(r) for r in session.scalars(sa.select(UserRow).order_by(UserRow.name))]

    def update_user(
        self, name: str, *, role: Role | str | None = None, disabled: bool | None = None
    ) -> User:
        new_role = parse_role(str(role)) if role is not None else None
        details = {"role": new_role.value if new_role else None, "disabled": disabled}
        action = "user.disable" if disabled and new_role is None else "user.update"
        with audit.audited(self.db, action, "user", name, details) as sc:
            row = self._user_row(sc.session, name)
            if new_role is not None:
                row.role = new_role.value
            if disabled is not None:
                row.disabled = disabled
            sc.session.flush()
            return _user(row)

    def create_token(
        self,
        user: str,
        *,
        name: str = "",
        expires_in_days: float | None = None,
        scope: str | None = None,
    ) -> NewToken:
        if expires_in_days is not None and not (
            MIN_TOKEN_DAYS <= expires_in_days <= MAX_TOKEN_DAYS
        ):  # NaN fails both comparisons; 1e-300 days would round to "never expires"
            raise InvalidInput(
                f"expires_in_days must be between {MIN_TOKEN_DAYS} (about a minute) and "
                f"{MAX_TOKEN_DAYS} (100 years), got {expires_in_days}",
                details={"field": "expires_in_days"},
            )
        if len(name) > 128:
            raise InvalidInput(
                "Token name is longer than 128 characters", details={"field": "name"}
            )
        if scope is not None and scope not in TOKEN_SCOPES:
            raise InvalidInput(
                f"Unknown token scope {scope!r}: use {', '.join(TOKEN_SCOPES)} (a service token "
                "that may only predict), or none (the user's role)",
                details={"field": "scope"},
            )
        expires = timedelta(days=expires_in_days) if expires_in_days is not None else None
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return self._store_token(user, name, secret, expires, scope)

    def _store_token(
        self,
        user: str,
        name: str,
        secret: str,
        expires_in: timedelta | None,
        scope: str | None = None,
    ) -> NewToken:
        """Record a token's digest (never the secret) for ``user``, audited."""
        now = utcnow()
        details = {"user": user, **({"scope": scope} if scope else {})}
        with audit.audited(self.db, "token.create", "token", details=details) as sc:
            owner = self._user_row(sc.session, user)
            row = TokenRow(
                id=new_id(),
                user_id=owner.id,
                name=name,
                prefix=secret[: len(TOKEN_PREFIX) + 4],
                digest=token_digest(secret),
                created_at=now,
                expires_at=now + expires_in if expires_in else None,
                revoked_at=None,
                last_used_at=None,
                scope=scope,
            )
            sc.session.add(row)
            sc.resource_id = row.id
            sc.session.flush()
            return NewToken(info=_token(row, owner.name), secret=secret)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        stmt = sa.select(TokenRow, UserRow.name).join(UserRow, TokenRow.user_id == UserRow.id)
        if user:
            stmt = stmt.where(UserRow.name == user)
        with self.db.read() as session:
            if user:
                self._user_row(session, user)
            return [_token(t, n) for t, n in session.execute(stmt.order_by(TokenRow.id))]

    def revoke_token(self, token_id: str) -> TokenInfo:
        with audit.audited(self.db, "token.revoke", "token", token_id) as sc:
            row = sc.session.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"Token {token_id!r} does not exist", details={"token": token_id})
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            owner = sc.session.get(UserRow, row.user_id)
            sc.session.flush()
            return _token(row, owner.name if owner else "")

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
        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be 1..10000, got {limit}", details={"field": "limit"})
        after = max(after_seq, decode_page_token(page_token, "after_seq"))
        records = audit.list_records(
            self.db,
            actor=actor,
            action=action,
            resource_type=resource_type,
            since=since,
            until=until,
            limit=limit + 1,
            after_seq=after,
        )
        more = len(records) > limit
        records = records[:limit]
        token = encode_page_token("after_seq", records[-1].seq) if more else None
        return Page[AuditRecord](items=records, next_page_token=token)

    def verify_audit(self) -> AuditVerification:
        return audit.verify(self.db)

    def checkpoint_audit(self) -> AuditCheckpoint | None:
        done = audit.write_checkpoint(self.db)
        return None if done is None else AuditCheckpoint.model_validate(done)

    def rebuild_audit_keys(self) -> AuditKeysRebuilt:
        return audit.rebuild_keys(self.db)

    def create_connection(self, name: str, url: str) -> Connection:
        return connections.create(self.db, name, url)

    def list_connections(self) -> list[Connection]:
        return connections.list_all(self.db)

    def delete_connection(self, name: str) -> None:
        connections.delete(self.db, name)

    def connection_url(self, name: str) -> str:
        """The decrypted URL of a registered connection, for this process's own use."""
        return connections.resolve(self.db, name)

    def whoami(self) -> WhoAmI:
        p = current().principal
        return WhoAmI(name=p.name, role=p.role, user_id=p.user_id)

    # -- used by the server ------------------------------------------------------------------
    def authenticate(self, secret: str) -> Principal:
        """The principal owning ``secret``; Unauthenticated if unknown, expired, revoked or
        its user is disabled (one message for all, so tokens cannot be probed)."""
        invalid = Unauthenticated("Invalid, expired or revoked API token")
        if not secret.startswith(TOKEN_PREFIX):
            raise invalid
        digest = token_digest(secret)
        # Every authenticated request runs this: a Core select of plain columns on a bare
        # connection (no ORM session or objects) keeps it to a fraction of a millisecond.
        with self.db.read_engine.connect() as conn:
            found = conn.execute(_AUTH_QUERY, {"digest": digest}).first()
        if found is None:
            raise invalid
        token_id, expires, revoked, last_used, user_id, name, role, disabled, scope = found
        now = utcnow()
        if revoked is not None or disabled or (expires and expires <= now):
            raise invalid
        if last_used is None or now - last_used > LAST_USED_RESOLUTION:
            # At most one write per token per minute: enough to spot unused tokens, and
            # read requests do not each take the write lock.
            with self.db.write() as session:
                session.execute(
                    sa.update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now)
                )
        if scope is not None:  # a service token: predicts, and is the least of roles
            return Principal(name, Role.VIEWER, user_id, token_id, scope=scope)
        return Principal(name=name, role=Role(role), user_id=user_id, token_id=token_id)

    def has_admin(self) -> bool:
        with self.db.read() as session:
            return bool(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(UserRow)
                    .where(UserRow.role == Role.ADMIN.value, UserRow.disabled.is_(False))
                )
            )

    def bootstrap_admin(self, name: str = "admin", secret: str | None = None) -> NewToken | None:
        """On first start: create an admin and a token for it (``secret`` if given).

        Returns None when an enabled admin exists already.
        """
        if self.has_admin():
            return None
        try:
            self.get_user(name)
        except NotFound:
            self.create_user(name, Role.ADMIN)
        else:
            self.update_user(name, role=Role.ADMIN, disabled=False)
        if secret is None:
            return self.create_token(name, name="bootstrap")
        if not secret.startswith(TOKEN_PREFIX) or len(secret) < len(TOKEN_PREFIX) + 24:
            raise InvalidInput(
                f"STRATA_ADMIN_TOKEN must start with {TOKEN_PREFIX!r} and carry at least 24 more"
                " characters",
                details={"field": "admin_token"},
            )
        return self._store_token(name, "bootstrap", secret, None)
