"""The app: health, readiness, metrics, request ids, error rendering and authentication."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from strata.core.clock import utcnow
from strata.core.config import Settings
from strata.core.principal import Role
from strata.governance.tables import TokenRow
from strata.server.app import create_app
from strata.server.logs import configure_logging

from .conftest import AppEnv, build_env, serve_in_thread

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is a rendered Strata error with this status and code, and no internals."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message", "details"}, body
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    return body


def test_healthz_and_index(shared_env: AppEnv) -> None:
    r = shared_env.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    links = shared_env.http.get("/index.json").json()["links"]
    for path in links.values():
        assert shared_env.http.get(path).status_code == 200, path


def test_readyz_ok(shared_env: AppEnv) -> None:
    r = shared_env.http.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "artifacts": "ok"}}


def test_readyz_503_when_artifact_root_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the artifact directory should be")
    settings = Settings(home=tmp_path / "home", artifact_uri=str(blocker))
    for env in build_env(settings):
        r = env.http.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert "not-a-dir" in body["checks"]["artifacts"]
        assert env.http.get("/healthz").status_code == 200  # alive, just not ready


def test_openapi_documents_the_routes(shared_env: AppEnv) -> None:
    spec = shared_env.http.get("/openapi.json").json()
    assert "/api/v1/users" in spec["paths"]
    assert "/healthz" in spec["paths"]
    assert shared_env.http.get("/docs").status_code == 200


def test_metrics_count_requests_by_route_template_and_status(env: AppEnv) -> None:
    admin = env.auth(Role.ADMIN)
    env.http.get("/api/v1/users/admin-user", headers=admin)
    env.http.get("/api/v1/users/viewer-user", headers=admin)
    env.http.get("/api/v1/users/nobody", headers=admin)
    env.http.get("/api/v1/users/nobody")
    env.http.get("/no/such/route")
    text = env.http.get("/metrics").text
    route = 'route="/api/v1/users/{name}"'
    assert f'strata_http_requests_total{{method="GET",{route},status="200"}} 2.0' in text
    assert f'strata_http_requests_total{{method="GET",{route},status="404"}} 1.0' in text
    assert f'strata_http_requests_total{{method="GET",{route},status="401"}} 1.0' in text
    assert 'strata_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "viewer-user" not in text and "nobody" not in text  # templates, not raw paths
    assert f'strata_http_request_duration_seconds_count{{method="GET",{route}}} 4.0' in text


def test_request_id_on_every_response(shared_env: AppEnv) -> None:
    seen = set()
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/no/such/route"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
    ]:
        r = shared_env.http.request(method, path)
        rid = r.headers.get("x-request-id", "")
        assert HEX32.match(rid), (path, rid)
        seen.add(rid)
    assert len(seen) == 5
    r = shared_env.http.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    for bad in ("x" * 65, "tab\there"):
        r = shared_env.http.get("/healthz", headers={"X-Request-ID": bad})
        assert HEX32.match(r.headers["x-request-id"])


def test_request_id_reaches_the_audit_log(env: AppEnv) -> None:
    r = env.http.post(
        "/api/v1/users",
        json={"name": "traced", "role": "viewer"},
        headers=env.auth(Role.ADMIN) | {"X-Request-ID": "req-audit-1"},
    )
    assert r.status_code == 201
    (record,) = env.gov.list_audit(action="user.create", limit=10_000).items[-1:]
    assert (record.resource_id, record.actor, record.request_id) == (
        "traced",
        "admin-user",
        "req-audit-1",
    )


@pytest.fixture
def json_log_stream(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> io.StringIO:
    """JSON logs configured onto a stream of our own (the server logs from its thread)."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO", json_logs=True)
    return stream


def test_json_access_log_carries_request_id(env: AppEnv, json_log_stream: io.StringIO) -> None:
    env.http.get("/api/v1/users/x", headers={"X-Request-ID": "log-me-42"})
    deadline = time.monotonic() + 10
    while "log-me-42" not in json_log_stream.getvalue():  # written just after the response
        assert time.monotonic() < deadline, json_log_stream.getvalue()
        time.sleep(0.01)
    lines = [json.loads(line) for line in json_log_stream.getvalue().splitlines() if line]
    (access,) = [line for line in lines if line.get("request_id") == "log-me-42"]
    assert access["logger"] == "strata.access"
    assert access["status"] == 401
    assert access["route"] == "/api/v1/users/{name}"
    assert access["level"] == "INFO"
    assert access["message"].startswith("GET /api/v1/users/x 401 ")


# -- errors --------------------------------------------------------------------------------


def test_401_without_token(shared_env: AppEnv) -> None:
    body = assert_error(shared_env.http.get("/api/v1/whoami"), 401, "UNAUTHENTICATED")
    assert "Authorization: Bearer" in str(body["message"])


@pytest.mark.parametrize(
    "header",
    [
        "Bearer strata_not-a-real-token-at-all-0000000000000",
        "Bearer not-even-our-prefix",
        "Bearer",
        "Token abc",
        "Basic !!!notbase64",
    ],
)
def test_401_with_bad_credentials(shared_env: AppEnv, header: str) -> None:
    body = assert_error(
        shared_env.http.get("/api/v1/whoami", headers={"Authorization": header}),
        401,
        "UNAUTHENTICATED",
    )
    assert "strata_" not in str(body["message"])  # the presented token is never echoed


def test_basic_auth_carries_the_token_as_password(shared_env: AppEnv) -> None:
    r = shared_env.http.get("/api/v1/whoami", auth=("anyone", shared_env.tokens[Role.VIEWER]))
    assert r.status_code == 200 and r.json()["name"] == "viewer-user"


def test_401_for_revoked_token(shared_env: AppEnv) -> None:
    new = shared_env.gov.create_token("editor-user")
    headers = {"Authorization": f"Bearer {new.secret}"}
    assert shared_env.http.get("/api/v1/whoami", headers=headers).status_code == 200
    shared_env.gov.revoke_token(new.info.id)
    assert_error(shared_env.http.get("/api/v1/whoami", headers=headers), 401, "UNAUTHENTICATED")


def test_401_for_expired_token(shared_env: AppEnv) -> None:
    new = shared_env.gov.create_token("editor-user", expires_in_days=1)
    headers = {"Authorization": f"Bearer {new.secret}"}
    assert shared_env.http.get("/api/v1/whoami", headers=headers).status_code == 200
    with shared_env.gov.db.write() as session:
        row = session.get(TokenRow, new.info.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert_error(shared_env.http.get("/api/v1/whoami", headers=headers), 401, "UNAUTHENTICATED")


def test_401_for_disabled_user_and_back(env: AppEnv) -> None:
    headers = env.auth(Role.EDITOR)
    env.gov.disable_user("editor-user")
    assert_error(env.http.get("/api/v1/whoami", headers=headers), 401, "UNAUTHENTICATED")
    env.gov.update_user("editor-user", disabled=False)
    assert env.http.get("/api/v1/whoami", headers=headers).status_code == 200


def test_403_names_user_and_permission(shared_env: AppEnv) -> None:
    r = shared_env.http.get("/api/v1/users", headers=shared_env.auth(Role.EDITOR))
    body = assert_error(r, 403, "PERMISSION_DENIED")
    assert "editor-user" in str(body["message"]) and "admin" in str(body["message"])
    assert body["details"] == {"needed": "admin", "role": "editor"}


def test_404_unknown_route_and_unknown_object(shared_env: AppEnv) -> None:
    body = assert_error(shared_env.http.get("/api/v1/nonexistent"), 404, "ENDPOINT_NOT_FOUND")
    assert "/api/v1/nonexistent" in str(body["message"])
    r = shared_env.http.get("/api/v1/users/ghost", headers=shared_env.auth(Role.ADMIN))
    body = assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    assert "ghost" in str(body["message"])
    assert_error(shared_env.http.put("/healthz"), 405, "METHOD_NOT_ALLOWED")


def test_400_validation_names_the_field(shared_env: AppEnv) -> None:
    admin = shared_env.auth(Role.ADMIN)
    body = assert_error(
        shared_env.http.post("/api/v1/users", json={"role": "editor"}, headers=admin),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "name" in str(body["message"])
    assert body["details"]["errors"][0]["field"] == "name"  # type: ignore[index]

    body = assert_error(
        shared_env.http.post("/api/v1/users", json={"name": ["x"]}, headers=admin),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "name" in str(body["message"])
    body = assert_error(
        shared_env.http.get("/api/v1/audit", params={"limit": 0}, headers=admin),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "limit" in str(body["message"])
    body = assert_error(
        shared_env.http.post(
            "/api/v1/users",
            content=b'{"name": ',
            headers=admin | {"content-type": "application/json"},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    body = assert_error(
        shared_env.http.post(
            "/api/v1/users", json={"name": "ok-name", "role": "god"}, headers=admin
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert body["details"] == {"field": "role"}


def test_413_above_the_body_limit(small_env: AppEnv) -> None:
    admin = small_env.auth(Role.ADMIN)
    big = {"name": "x", "role": "viewer", "pad": "p" * 2000}
    body = assert_error(
        small_env.http.post("/api/v1/users", json=big, headers=admin), 413, "REQUEST_TOO_LARGE"
    )
    assert "1000" in str(body["message"]) and body["details"] == {"limit": 1000}

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while streaming
        yield b'{"name": "y", "pad": "'
        for _ in range(10):
            yield b"p" * 200
        yield b'"}'

    r = small_env.http.post(
        "/api/v1/users", content=chunks(), headers=admin | {"content-type": "application/json"}
    )
    assert_error(r, 413, "REQUEST_TOO_LARGE")
    assert [u.name for u in small_env.gov.list_users() if u.name in ("x", "y")] == []
    # under the limit everything works as usual
    ok = small_env.http.post("/api/v1/users", json={"name": "z"}, headers=admin)
    assert ok.status_code == 201


def test_500_is_rendered_without_internals(shared_env: AppEnv) -> None:
    @shared_env.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    r = shared_env.http.get("/boom", headers={"X-Request-ID": "req-500"})
    body = assert_error(r, 500, "INTERNAL_ERROR")
    assert "secret internal" not in r.text and "RuntimeError" not in r.text
    assert "req-500" in str(body["message"])
    assert body["details"] == {"request_id": "req-500"}


def test_the_first_request_finds_the_route_contexts_built_at_startup(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI builds its included routers' route contexts on first use (~0.3 s for all of
    Strata's routes; 5.2 s once on a loaded CI machine, past a client's 5 s timeout): the
    app's startup builds them, so its first caller does not wait for them."""
    from fastapi import routing
    from starlette.testclient import TestClient

    app = create_app(sqlite_settings, auth=False)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        built: list[str] = []
        build = routing._EffectiveRouteContext.from_api_route

        def counted(**kwargs: object) -> object:
            built.append(str(getattr(kwargs["original_route"], "path", "")))
            return build(**kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(routing._EffectiveRouteContext, "from_api_route", counted)
        assert http.get("/api/v1/whoami").status_code == 200
        assert http.get("/api/v1/data/datasets").status_code == 200
    assert built == []


def test_no_auth_mode_acts_as_local_admin(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings, auth=False)
    for url in serve_in_thread(app):
        with httpx.Client(base_url=url) as http:
            r = http.get("/api/v1/whoami")
            assert r.status_code == 200
            assert r.json()["role"] == "admin"
            assert http.post("/api/v1/users", json={"name": "made-locally"}).status_code == 201


def test_a_server_process_freezes_what_its_start_left_and_an_embedding_one_does_not(
    tmp_path: Path,
) -> None:
    """`strata server` (``freeze_heap``) moves what its start left out of the cyclic
    collector's view once started, so full collections walk only what requests make; an app
    embedded elsewhere (tests, another server) leaves its process's collector alone."""
    import subprocess

    script = """
import gc, sys
from starlette.testclient import TestClient
from strata.core.config import Settings
from strata.server.app import create_app
app = create_app(Settings(home=sys.argv[1]), auth=False, freeze_heap=sys.argv[2] == "1")
before = gc.get_freeze_count()
with TestClient(app, base_url="http://127.0.0.1") as http:
    assert http.get("/healthz").status_code == 200
    print(before, gc.get_freeze_count())
"""
    counts = {}
    for flag in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"home{flag}"), flag],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        counts[flag] = (int(out[0]), int(out[1]))
    assert counts["1"][0] == 0 and counts["1"][1] > 10_000  # the modules, the app, routes
    assert counts["0"] == (0, 0)
