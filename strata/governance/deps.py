"""The one permission check every route uses.

A route declares what it needs — ``dependencies=[Depends(require(Permission.WRITE))]`` — and
this dependency authenticates the bearer token, checks the role, audits every 401/403 as
a rate-limited security event (:mod:`strata.governance.events`), and sets the call context
(principal + request id) the services audit with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from strata.backends.db import Database
from strata.core.errors import PermissionDenied, Unauthenticated
from strata.core.principal import Permission, Principal, Role, bind, local_principal
from strata.core.threads import run_blocking
from strata.governance import events
from strata.governance.embedded import EmbeddedGovernance

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class AuthState:
    """Held on ``app.state.auth``."""

    enabled: bool
    governance: EmbeddedGovernance
    db: Database
    #: Rate limit of the 401/403 records (per app: one record per caller + route a minute).
    auth_events: events.EventLimiter = field(default_factory=events.auth_limiter)
    #: Rate limit of refused data writes (the first 20 per caller + action a minute).
    refusals: events.EventLimiter = field(default_factory=events.refusal_limiter)


def bearer_token(request: Request) -> str | None:
    return authorization_token(request.headers.get("authorization", ""))


def authorization_token(header: str) -> str | None:
    """The token an ``Authorization`` header carries (Bearer, or Basic's password), or None."""
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


def peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def route_action(request: Request) -> str:
    """``METHOD /route/template``: what an audit record of a refused request names."""
    return f"{request.method} {getattr(request.scope.get('route'), 'path', request.url.path)}"


async def _refused(
    request: Request, state: AuthState, who: str, outcome: str, **details: str
) -> None:
    """Audit a 401/403 as a security event (rate-limited per caller and route)."""
    await run_blocking(
        events.security_event,
        state.db,
        state.auth_events,
        action=route_action(request),
        resource_id=request.url.path,
        who=who,
        outcome=outcome,
        details={"ip": peer(request)} | details,
    )


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency that admits callers whose role carries ``permission``."""

    async def dependency(request: Request) -> Principal:
        state: AuthState = request.app.state.auth
        request_id = getattr(request.state, "request_id", None)
        if not state.enabled:
            principal = local_principal()
        else:
            token = bearer_token(request)
            try:
                if token is None:
                    raise Unauthenticated(
                        "Authentication required: send 'Authorization: Bearer <token>' "
                        "(create one with `strata tokens create --user NAME`)"
                    )
                principal = await run_blocking(state.governance.authenticate, token)
            except Unauthenticated:
                who = f"anonymous@{peer(request)}"
                bind(Principal(name=who[:64], role=Role.VIEWER), request_id)
                reason = "no token" if token is None else "invalid, expired or revoked token"
                await _refused(request, state, who, "unauthenticated", reason=reason)
                raise
        bind(principal, request_id)
        if not principal.can(permission):
            await _refused(
                request,
                state,
                principal.name,
                "denied",
                needed=permission.value,
                role=principal.role.value,
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
