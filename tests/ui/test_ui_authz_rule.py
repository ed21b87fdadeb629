"""Every web UI route, placed by a hand-written rule (the REST API's: test_authz_rule.py).

The rule, independent of what each route declares:

- a page (GET) needs a logged-in viewer: without a session it redirects to the login form;
- the admin pages (the audit log) need an admin: an editor gets a 403 page;
- a form post (POST) changes something: without a session it is refused, and a viewer with a
  valid CSRF value for their own session gets a 403 and changes nothing;
- only the login form, logout and the bundled docs are public, each listed below on purpose.

A new UI route the rule cannot place fails the test, and so does a stale allow-list entry.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute, iter_route_contexts

from strata.core.config import Settings
from strata.core.principal import Role
from strata.server.app import create_app
from strata.ui.deps import admin_viewer, page_viewer
from ui.conftest import UiEnv, csrf_of

#: UI routes that need no session, each on purpose: (method, template).
PUBLIC = frozenset(
    {
        ("GET", "/login"),  # the form itself
        ("POST", "/login"),  # checks the token and its own CSRF value
        ("POST", "/logout"),  # ends whatever session the cookie holds, if any
        ("GET", "/docs"),  # the bundled documentation: no project data
    }
)
#: Pages only admins see.
ADMIN = frozenset({("GET", "/audit")})


def ui_routes(settings: Settings) -> list[tuple[str, str, set[object]]]:
    """(method, path template, the dependency callables) of every route the UI module defines."""
    found = []
    for ctx in iter_route_contexts(create_app(settings).routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute) or not route.endpoint.__module__.startswith("strata.ui"):
            continue
        deps = {d.call for d in ctx.dependant.dependencies} if ctx.dependant else set()
        for method in sorted(ctx.methods or ()):
            if method not in ("HEAD", "OPTIONS"):
                found.append((method, ctx.path or "", deps))
    return found


def _filled(template: str) -> str:
    """A concrete URL for a template: every path parameter gets a harmless made-up value."""
    return re.sub(r"\{[^}]+\}", "x1", template)


def test_every_ui_route_declares_its_viewer(sqlite_settings: Settings) -> None:
    found = ui_routes(sqlite_settings)
    assert len(found) > 30, "the UI's routes are seen"
    problems = []
    for method, path, deps in found:
        key = (method, path)
        if key in PUBLIC:
            continue
        want = admin_viewer if key in ADMIN else page_viewer
        if want not in deps:
            problems.append(f"{method} {path}: does not depend on {want.__name__}")
        if method not in ("GET", "POST"):
            problems.append(f"{method} {path}: the rule places only pages (GET) and forms (POST)")
    assert not problems, f"{len(problems)} UI routes off the rule:\n" + "\n".join(problems)
    seen = {(m, p) for m, p, _ in found}
    assert seen >= PUBLIC | ADMIN, f"stale allow-list entries: {sorted((PUBLIC | ADMIN) - seen)}"


def test_no_session_no_page_and_no_write(ui_env: UiEnv, sqlite_settings: Settings) -> None:
    routes = [(m, p) for m, p, _ in ui_routes(sqlite_settings) if (m, p) not in PUBLIC]
    with ui_env.http() as http:
        for method, template in routes:
            url = _filled(template)
            if method == "GET":
                r = http.get(url)
                assert r.status_code == 303, (url, r.status_code)
                assert r.headers["location"].startswith("/login?next="), url
            else:
                r = http.post(url, data={"key": "sneaky", "value": "1", "action": "delete"})
                assert r.status_code in (303, 401, 403), (url, r.status_code)
                assert r.headers.get("location", "/login").startswith("/login"), url


def test_a_viewer_is_refused_every_form_post(ui_env: UiEnv, sqlite_settings: Settings) -> None:
    run_id = ui_env.run_ids[1]
    name, version = ui_env.dataset_ref.split("@")
    values = {"run_id": run_id, "name": name, "version_id": version}
    posts = [p for m, p, _ in ui_routes(sqlite_settings) if m == "POST" and (m, p) not in PUBLIC]
    assert len(posts) >= 4, posts
    before = ui_env.client.tracking.get_run(run_id)
    with ui_env.http(Role.VIEWER) as http:
        csrf = csrf_of(http.get(f"/runs/{run_id}").text)  # valid for this viewer's session
        for template in posts:
            url = re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "x1"), template)
            form = {"csrf": csrf, "key": "sneaky", "value": "1", "action": "delete", "tag": "p"}
            r = http.post(url, data=form)
            assert r.status_code == 403, (url, r.status_code, r.text[:300])
            assert "Traceback" not in r.text
    after = ui_env.client.tracking.get_run(run_id)
    assert after.tags == before.tags
    assert after.info.lifecycle_stage == before.info.lifecycle_stage
    assert "p" not in (ui_env.client.data.get_version(ui_env.dataset_ref).tags or [])


def test_admin_pages_refuse_an_editor(ui_env: UiEnv) -> None:
    for _, path in sorted(ADMIN):
        with ui_env.http(Role.EDITOR) as http:
            assert http.get(path).status_code == 403, path
        with ui_env.http(Role.ADMIN) as http:
            assert http.get(path).status_code == 200, path
