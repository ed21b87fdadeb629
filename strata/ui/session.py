"""Who is looking at a page: the session cookie, CSRF tokens and the permission check.

* The session cookie (``strata_session``) holds the API token the user logged in with; it is
  ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends it).
  The REST API never reads it: it wants ``Authorization`` headers, so cookies cannot be used
  to forge API calls.
* CSRF: a second random cookie (``strata_csrf``, also HttpOnly + Strict) is the key; each
  form carries ``HMAC-SHA256(key, session)`` in its ``csrf`` field. A page of another origin
  can neither read the cookie nor compute the value, and the value changes with the session,
  so a token copied from one login does not work in another. The login form is protected
  too (no logging a victim into someone else's account). Stateless, so it works with many
  server workers.
* Writes go through :func:`check_write`, which refuses (403 page) and audits the refusal just
  as the REST API's ``require`` dependency does; a viewer's page has no write controls, and a
  forged form post still fails here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, PermissionDenied, Unauthenticated
from strata.core.principal import Permission, Principal, bind, local_principal
from strata.core.threads import run_blocking
from strata.governance import audit
from strata.governance.deps import AuthState

SESSION_COOKIE = "strata_session"
CSRF_COOKIE = "strata_csrf"
CSRF_FIELD = "csrf"
#: How long a login lasts in the browser (the token itself may expire sooner).
SESSION_MAX_AGE_S = 12 * 3600


@dataclass
class Viewer:
    """The principal behind a page request, with what the templates need to know."""

    principal: Principal
    csrf: str
    auth_enabled: bool
    logged_in: bool
    #: Cookies to set on the response (a fresh CSRF key on a first visit).
    set_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def can_write(self) -> bool:
        return self.principal.can(Permission.WRITE)

    @property
    def is_admin(self) -> bool:
        return self.principal.can(Permission.ADMIN)


def _csrf_value(key: str, session: str) -> str:
    return hmac.new(key.encode(), b"strata-ui-csrf:" + session.encode(), hashlib.sha256).hexdigest()


def _csrf_key(request: Request, fresh: dict[str, str]) -> str:
    key = request.cookies.get(CSRF_COOKIE, "")
    if len(key) < 32:
        key = secrets.token_urlsafe(32)
        fresh[CSRF_COOKIE] = key
    return key


def csrf_for(request: Request, fresh: dict[str, str]) -> str:
    """The CSRF value the page's forms must carry (creating the key cookie if needed)."""
    key = _csrf_key(request, fresh)
    return _csrf_value(key, request.cookies.get(SESSION_COOKIE, ""))


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form post whose CSRF value is missing or wrong (403, nothing written)."""
    key = request.cookies.get(CSRF_COOKIE, "")
    expected = _csrf_value(key, request.cookies.get(SESSION_COOKIE, "")) if key else ""
    if not key or not submitted or not hmac.compare_digest(expected, submitted):
        raise PermissionDenied(
            "The form's CSRF token is missing or does not match this browser session: "
            "reload the page and submit again",
            details={"field": CSRF_FIELD},
        )


SERVICE_TOKEN_REFUSED = (
    "This is a service token: it may only call models on inference servers. Log in with a "
    "user's own token"
)


async def viewer(request: Request, *, required: bool = True) -> Viewer | None:
    """Authenticate the page request from the session cookie.

    Raises Unauthenticated (the UI redirects to the login page) when auth is on and there is
    no valid session, unless ``required`` is false (then returns None). Sets the call
    context, so services audit the principal as they do for REST calls.
    """
    state: AuthState = request.app.state.auth
    fresh: dict[str, str] = {}
    csrf = csrf_for(request, fresh)
    request_id = getattr(request.state, "request_id", None)
    if not state.enabled:
        principal = local_principal()
        logged_in = False
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            if not required:
                return None
            raise Unauthenticated("Log in with an API token to see this page")
        try:
            principal = await run_blocking(state.governance.authenticate, token)
            if not principal.can(Permission.READ):  # a service token: it may only predict
                raise Unauthenticated(SERVICE_TOKEN_REFUSED)
        except Unauthenticated:
            if not required:
                return None
            raise
        logged_in = True
    bind(principal, request_id)
    return Viewer(principal, csrf, state.enabled, logged_in, fresh)


async def check_write(
    request: Request, who: Viewer, form: dict[str, Any], permission: Permission
) -> None:
    """CSRF first, then the role; a refused write is audited like a refused REST call."""
    check_csrf(request, form.get(CSRF_FIELD))
    if who.principal.can(permission):
        return
    state: AuthState = request.app.state.auth
    await run_blocking(
        audit.record_denied, state.db, f"POST {request.url.path}", "ui", request.url.path
    )
    raise PermissionDenied(
        f"User {who.principal.name!r} (role {who.principal.role.value}) may not change this: "
        f"it needs the {permission.value!r} permission",
        details={"needed": permission.value, "role": who.principal.role.value},
    )


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def apply_cookies(request: Request, response: Response, who: Viewer | None) -> None:
    if who is not None:
        for name, value in who.set_cookies.items():
            set_cookie(request, response, name, value, SESSION_MAX_AGE_S * 30)


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: no ``//host`` or scheme)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(c in target for c in "\r\n\t")
    ):
        return "/"
    return target


def require_text(form: dict[str, Any], name: str, what: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required", details={"field": name})
    return value.strip()
