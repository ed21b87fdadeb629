"""The home page, login/logout, the audit log, and the mount of the whole UI on the app."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from strata.core.errors import InvalidInput, Unauthenticated
from strata.core.principal import Permission
from strata.core.threads import run_blocking
from strata.ui import (
    artifacts,
    datasets,
    features,
    monitoring,
    registry,
    serving,
    studies,
    tracking,
)
from strata.ui.deps import admin_viewer, client_of, page_viewer
from strata.ui.session import (
    CSRF_FIELD,
    SERVICE_TOKEN_REFUSED,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Viewer,
    check_csrf,
    csrf_for,
    safe_next,
    set_cookie,
    viewer,
)
from strata.ui.web import STATIC_DIR, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
AUDIT_PAGE = 100


@router.get("/")
def home(request: Request, who: Viewer = Depends(page_viewer)) -> Response:
    """The experiments list. Its script sends MLflow links (``/#/experiments/1/runs/abc``,
    whose fragment never reaches the server) to the matching page."""
    page = client_of(request).tracking.search_experiments(max_results=1000)
    return render(request, who, "experiments.html", experiments=page.items, q="", view="")


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:
    who = await viewer(request, required=False)
    if who is not None and (who.logged_in or not who.auth_enabled):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next)


def _login_page(request: Request, next: str, error: str | None = None) -> Response:
    fresh: dict[str, str] = {}
    return render(
        request,
        None,
        "login.html",
        status=401 if error else 200,
        cookies=fresh,
        csrf=csrf_for(request, fresh),
        next=safe_next(next),
        error=error,
    )


@router.post("/login")
async def login(request: Request) -> Response:
    form = dict(await request.form())
    check_csrf(request, _text(form.get(CSRF_FIELD)))
    target = safe_next(_text(form.get("next")))
    token = _text(form.get("token")).strip()
    if not token:
        return _login_page(request, target, "Paste an API token to log in")
    governance = request.app.state.auth.governance
    try:
        principal = await run_blocking(governance.authenticate, token)
    except Unauthenticated as exc:
        return _login_page(request, target, exc.message)
    if not principal.can(Permission.READ):  # a service token: it may only predict
        return _login_page(request, target, SERVICE_TOKEN_REFUSED)
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_MAX_AGE_S)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = dict(await request.form())
    check_csrf(request, _text(form.get(CSRF_FIELD)))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _time(value: str, field: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date and time like 2026-01-31T12:00, got {value!r}",
            details={"field": field},
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@router.get("/audit")
def audit_log(
    request: Request,
    actor: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
    after: int = 0,
    who: Viewer = Depends(admin_viewer),
) -> Response:
    """Audit records (admins): filter by actor, action (``runs.*``) and time, verify."""
    governance = client_of(request).governance
    error = None
    records: list[Any] = []
    try:
        start, end = _time(since, "since"), _time(until, "until")
        records = governance.list_audit(
            actor=actor or None,
            action=action or None,
            since=start,
            until=end,
            limit=AUDIT_PAGE,
            after_seq=max(after, 0),
        ).items
    except InvalidInput as exc:
        error, end = exc.message, None
    more = len(records) == AUDIT_PAGE
    return render(
        request,
        who,
        "audit.html",
        status=400 if error else 200,
        records=records,
        verification=governance.verify_audit(),
        actor=actor,
        action=action,
        since=since,
        until=until,
        after=after,
        next_after=records[-1].seq if records and more else None,
        error=error,
    )


def _docs(app: FastAPI) -> None:
    """Swagger UI from the vendored assets: /docs works offline."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )


def mount_ui(app: FastAPI) -> None:
    """Add the web UI (pages, static assets, offline /docs) to the app."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _docs(app)
    # One layer's pages per line: a new layer appends its router here.
    for part in (
        router,
        tracking.router,
        artifacts.router,
        datasets.router,
        features.router,
        registry.router,
        studies.router,
        monitoring.router,
        serving.router,
    ):
        app.include_router(part)
