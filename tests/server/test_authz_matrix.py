"""The authorization matrix: every /api route, every role → allowed or 403; no token → 401.

Generic on purpose: it enumerates the routes of the app as built (every layer's router), so
routes added later are covered without touching this file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.convertors import FloatConvertor, IntegerConvertor, PathConvertor, UUIDConvertor
from starlette.routing import Mount

from strata.core.config import Settings
from strata.core.principal import Permission, Role, role_allows
from strata.governance.deps import MUTATING
from strata.server.app import create_app

from .conftest import AppEnv, build_env

CALLED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    path: str
    permission: Permission

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def permissions_of(dependant: Dependant) -> list[Permission]:
    """Every ``require(...)`` dependency in the tree (callables carrying ``.permission``)."""
    found: list[Permission] = []
    permission = getattr(dependant.call, "permission", None)
    if isinstance(permission, Permission):
        found.append(permission)
    for sub in dependant.dependencies:
        found.extend(permissions_of(sub))
    return found


def _dummy(convertor: object) -> str:
    if isinstance(convertor, IntegerConvertor):
        return "987654"
    if isinstance(convertor, FloatConvertor):
        return "1.5"
    if isinstance(convertor, UUIDConvertor):
        return str(uuid.UUID(int=1))
    if isinstance(convertor, PathConvertor):
        return "dummy/path.txt"
    return "dummy-0000"


def api_calls(app: FastAPI) -> list[Call]:
    """One call per (method, route) under /api; fails on any route without a permission.

    Walks the effective routes (included routers flattened, their prefixes and include-level
    dependencies applied), as the app serves them.
    """
    calls: list[Call] = []
    unprotected: list[str] = []
    foreign: list[str] = []
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path or ""
        if not path.startswith("/api"):
            continue
        route = ctx.original_route
        if not isinstance(route, APIRoute):
            kind = "mount" if isinstance(route, Mount) else type(route).__name__
            foreign.append(f"{kind} {path}: not an APIRoute, so it cannot declare require()")
            continue
        dependant = ctx.dependant
        perms = set(permissions_of(dependant)) if dependant is not None else set()
        methods = sorted(m for m in ctx.methods or () if m in CALLED_METHODS)
        if len(perms) != 1:
            unprotected.append(f"{methods} {path}: require() found {sorted(perms)}")
            continue
        (permission,) = perms
        values = {name: _dummy(conv) for name, conv in ctx.param_convertors.items()}
        concrete = PARAM.sub(lambda m, v=values: v[m.group(1)], path)  # type: ignore[misc]
        calls.extend(Call(method, path, concrete, permission) for method in methods)
    assert not unprotected, "every /api route must declare exactly one require(...):\n" + (
        "\n".join(unprotected)
    )
    assert not foreign, "\n".join(foreign)
    return calls


def _send(env: AppEnv, call: Call, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    kwargs: dict[str, object] = {"headers": headers}
    if call.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    r = env.http.request(call.method, call.path, **kwargs)  # type: ignore[arg-type]
    try:
        body = r.json()
    except ValueError:
        body = {}
    return r.status_code, body if isinstance(body, dict) else {}


def test_every_api_route_declares_a_permission(sqlite_settings: Settings) -> None:
    calls = api_calls(create_app(sqlite_settings))
    templates = {str(c) for c in calls}
    # sanity: the foundation's own routes are seen, with the permission they need
    assert "POST /api/v1/users" in templates
    assert "GET /api/v1/whoami" in templates
    by_name = {str(c): c.permission for c in calls}
    assert by_name["GET /api/v1/whoami"] is Permission.READ
    assert by_name["DELETE /api/v1/tokens/{token_id}"] is Permission.ADMIN


def test_permissions_of_finds_nested_require() -> None:
    from fastapi import Depends
    from fastapi.dependencies.utils import get_dependant

    from strata.governance.deps import require

    def inner(_: object = Depends(require(Permission.APPROVE))) -> None:
        return None

    def endpoint(_: None = Depends(inner)) -> None:
        return None

    assert permissions_of(get_dependant(path="/x", call=endpoint)) == [Permission.APPROVE]
    assert permissions_of(get_dependant(path="/x", call=inner)) == [Permission.APPROVE]


@pytest.fixture
def any_db_env(settings: Settings) -> Iterator[AppEnv]:
    """The app on each metadata backend (denied calls are audited in its database)."""
    yield from build_env(settings)


def test_authorization_matrix(any_db_env: AppEnv) -> None:
    env = any_db_env
    calls = api_calls(env.app)
    assert calls
    problems: list[str] = []
    denied_mutations: list[tuple[Role, Call]] = []
    for call in calls:
        status, body = _send(env, call, {})
        if status != 401 or body.get("error_code") != "UNAUTHENTICATED":
            problems.append(f"{call} without a token: {status} {body}, expected 401")
        status, _ = _send(env, call, {"Authorization": "Bearer strata_wrong-token-0123456789"})
        if status != 401:
            problems.append(f"{call} with a wrong token: {status}, expected 401")
        for role in Role:
            status, body = _send(env, call, env.auth(role))
            allowed = role_allows(role, call.permission)
            if allowed:
                if status in (401, 403) or status >= 500:
                    problems.append(
                        f"{call} as {role.value} (needs {call.permission.value}): "
                        f"{status} {body}, expected an answer other than 401/403/5xx"
                    )
            else:
                if status != 403 or body.get("error_code") != "PERMISSION_DENIED":
                    problems.append(
                        f"{call} as {role.value} (needs {call.permission.value}): "
                        f"{status} {body}, expected 403"
                    )
                elif call.method in MUTATING:
                    denied_mutations.append((role, call))
    assert not problems, f"{len(problems)} wrong answers:\n" + "\n".join(problems)

    # every refused mutating call is in the audit log, outcome "denied", by the right user
    records = env.gov.list_audit(limit=10_000).items
    denied = {(r.actor, r.action, r.resource_id) for r in records if r.outcome == "denied"}
    missing = [
        f"{role.value}: {call}"
        for role, call in denied_mutations
        if (env.users[role], f"{call.method} {call.template}"[:64], call.path) not in denied
    ]
    assert not missing, "denied calls missing from the audit log:\n" + "\n".join(missing)
    assert env.gov.verify_audit().ok


@pytest.mark.parametrize("role", list(Role))
def test_denied_mutation_is_audited_with_request_id(env: AppEnv, role: Role) -> None:
    r = env.http.post(
        "/api/v1/users",
        json={"name": "intruder", "role": "admin"},
        headers=env.auth(role) | {"X-Request-ID": f"deny-{role.value}"},
    )
    if role is Role.ADMIN:
        assert r.status_code == 201
        return
    assert r.status_code == 403
    (record,) = [r for r in env.gov.list_audit(limit=10_000).items if r.outcome == "denied"]
    assert record.actor == env.users[role]
    assert record.action == "POST /api/v1/users"
    assert record.resource_type == "route"
    assert record.request_id == f"deny-{role.value}"
    assert [u.name for u in env.gov.list_users() if u.name == "intruder"] == []


def test_a_denied_read_is_a_security_event(env: AppEnv) -> None:
    assert env.http.get("/api/v1/users", headers=env.auth(Role.VIEWER)).status_code == 403
    (record,) = [r for r in env.gov.list_audit(limit=10_000).items if r.outcome == "denied"]
    assert (record.actor, record.action) == (env.users[Role.VIEWER], "GET /api/v1/users")
