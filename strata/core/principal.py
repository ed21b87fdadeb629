"""Who is calling: roles, permissions and the per-call context (principal + request id).

The call context lives in a ``contextvars.ContextVar`` so services can audit "who" without
every signature carrying it. The server sets it per request; embedded use defaults to the
local OS user with the ``admin`` role.
"""

from __future__ import annotations

import contextvars
import getpass
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Roles in increasing order of power; each includes the ones before it."""

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(StrEnum):
    """What a route or operation needs."""

    READ = "read"
    WRITE = "write"
    APPROVE = "approve"
    ADMIN = "admin"
    PREDICT = "predict"
    """Call a model on an inference server (``strata serve``): every role holds it."""


_MIN_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.WRITE: Role.EDITOR,
    Permission.APPROVE: Role.APPROVER,
    Permission.ADMIN: Role.ADMIN,
    Permission.PREDICT: Role.VIEWER,
}
_ORDER = {role: i for i, role in enumerate(Role)}

PREDICT_SCOPE = "predict"
"""The scope of a service token: it may call models on inference servers, nothing else."""
TOKEN_SCOPES = (PREDICT_SCOPE,)


def role_allows(role: Role, permission: Permission) -> bool:
    """True when ``role`` carries ``permission``."""
    return _ORDER[role] >= _ORDER[_MIN_ROLE[permission]]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role
    user_id: str | None = None
    token_id: str | None = None
    scope: str | None = None
    """``"predict"``: a service token's principal, which may only predict (its role is then
    the least, viewer, for any check that reads the role itself)."""

    def can(self, permission: Permission) -> bool:
        if self.scope is not None:  # a scope this release does not know grants nothing
            return self.scope == PREDICT_SCOPE and permission is Permission.PREDICT
        return role_allows(self.role, permission)


@dataclass(frozen=True)
class CallContext:
    principal: Principal
    request_id: str | None = None


def local_principal() -> Principal:
    """The embedded caller: the local OS user, with admin rights."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return Principal(name=name, role=Role.ADMIN)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "strata_call_context", default=None
)


def current() -> CallContext:
    """The context of the running call (embedded default when none was set)."""
    ctx = _current.get()
    return ctx if ctx is not None else CallContext(principal=local_principal())


def bind(principal: Principal, request_id: str | None = None) -> CallContext:
    """Make ``principal`` (and ``request_id``) the context of the running call.

    The server's auth dependency calls it once per request; the value lives in the request's
    own context (copied into the worker thread that runs a blocking route), so it ends with
    the request and needs no reset."""
    ctx = CallContext(principal=principal, request_id=request_id)
    _current.set(ctx)
    return ctx
