"""Rendering: the Jinja2 environment, page responses, and errors shown as pages.

UI routes use :class:`PageRoute`: a StrataError raised while building a page becomes an HTML
page with the error's status and one-sentence message (never a stack trace, never JSON), and
Unauthenticated becomes a redirect to the login page that comes back afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse, RedirectResponse, Response

from strata import __version__
from strata.core.errors import StrataError, Unauthenticated
from strata.ui.session import SESSION_MAX_AGE_S, Viewer, apply_cookies, set_cookie

log = logging.getLogger("strata.ui")
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

#: Security headers of every UI page: no framing, no inline script or foreign origins.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ms(value: int | None) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(end - start, 0) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:,}"


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _short(value: Any, width: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _tojson(value: Any) -> Markup:
    # For data-* attributes (autoescaped by the caller) and <script type=application/json>.
    text = json.dumps(value, allow_nan=False, default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, sort_keys=True)


def _build_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        ms=_ms,
        when=_when,
        num=_num,
        size=_size,
        short=_short,
        tojson=_tojson,
        pretty=_pretty,
        q=lambda v: quote(str(v), safe=""),
    )
    env.globals.update(version=__version__, duration=_duration, urlencode=urlencode)
    return env


ENV = _build_env()


def next_link(path: str, token: str | None, **query: str) -> str | None:
    """The URL of the page after this one (tokens only go forward), or None at the end."""
    if not token:
        return None
    return f"{path}?{urlencode({k: v for k, v in query.items() if v} | {'page': token})}"


def render(
    request: Request,
    who: Viewer | None,
    template: str,
    status: int = 200,
    cookies: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the viewer (None on the login page) and ``context``;
    ``cookies`` are set on the response (as the viewer's fresh ones are)."""
    html = ENV.get_template(template).render(request=request, who=who, **context)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    apply_cookies(request, response, who)
    for name, value in (cookies or {}).items():
        set_cookie(request, response, name, value, SESSION_MAX_AGE_S * 30)
    return response


def error_page(request: Request, exc: StrataError) -> Response:
    if isinstance(exc, Unauthenticated):
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return RedirectResponse("/login", status_code=303)
    return render(request, None, "error.html", status=exc.http_status, error=exc)


class PageRoute(APIRoute):
    """A route whose StrataErrors render as HTML pages (or a login redirect)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except StrataError as exc:
                return error_page(request, exc)

        return route
