"""The one permission check every route uses.

A route declares what it needs — ``dependencies=[Depends(require(Permission.WRITE))]`` — and
this dependency authenticates the bearer token, checks the role, audits refused mutating
calls, and sets the call context (principal + request id) the services audit with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from strata.backends.db import Database
from strata.core.errors import PermissionDenied, Unauthenticated
from strata.core.principal import Permission, Principal, bind, local_principal
from strata.core.threads import run_blocking
from strata.governance import audit
from strata.governance.service import EmbeddedGovernance

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class AuthState:
    """Held on ``app.state.auth``."""

    enabled: bool
    governance: EmbeddedGovernance
    db: Database


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        # The MLflow client sends Basic auth when MLFLOW_TRACKING_USERNAME/PASSWORD are set:
        # accept the token as the password.
        import base64
        import binascii

        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _resource(request: Request) -> str:
    return request.url.path


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency that admits callers whose role carries ``permission``."""

    async def dependency(request: Request) -> Principal:
        state: AuthState = request.app.state.auth
        request_id = getattr(request.state, "request_id", None)
        if not state.enabled:
            principal = local_principal()
        else:
            token = bearer_token(request)
            if token is None:
                raise Unauthenticated(
                    "Authentication required: send 'Authorization: Bearer <token>' "
                    "(create one with `strata tokens create --user NAME`)"
                )
            principal = await run_blocking(state.governance.authenticate, token)
        bind(principal, request_id)
        if not principal.can(permission):
            if request.method in MUTATING:
                await run_blocking(
                    audit.record_denied,
                    state.db,
                    f"{request.method} {getattr(request.scope.get('route'), 'path', '')}",
                    "route",
                    _resource(request),
                )
            raise PermissionDenied(
                f"User {principal.name!r} (role {principal.role.value}) may not "
                f"{request.method} {request.url.path}: it needs the {permission.value!r} "
                "permission",
                details={"needed": permission.value, "role": principal.role.value},
            )
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency
